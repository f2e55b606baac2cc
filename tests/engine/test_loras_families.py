"""LoRAs for the diffusion-transformer families (FLUX.1, SD 3.5, Z-Image, Qwen-Image): recognised by
header in the layouts users have, applied with ``<lora:name:w>`` through the one core mechanism
(``engine.core.loras``, the same as SD's), recorded as "Lora hashes", and gone again bit for bit when
the prompt no longer names them. Tiny random-weight models; the LoRAs are made from their actual
module shapes (``engine.testloras.make_transformer_lora``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import families
from engine.api import GenerationRequest, UnsupportedModel
from engine.files.probe import check_model, inspect_model
from engine.testaddons import make_kind_file
from engine.testloras import make_transformer_lora
from engine.testmodels import save_safetensors


def _header_file(path: Path, shapes: dict[str, tuple[int, ...]], metadata=None) -> Path:
    save_safetensors(path, {k: torch.zeros(s, dtype=torch.float16) for k, s in shapes.items()}, metadata)
    return path


def _pair(key: str, down: tuple[int, int], up: tuple[int, int], names=("lora_A", "lora_B")) -> dict:
    return {f"{key}.{names[0]}.weight": down, f"{key}.{names[1]}.weight": up}


KOHYA = ("lora_down", "lora_up")


@pytest.mark.parametrize("shapes,family", [
    (_pair("transformer.single_transformer_blocks.0.attn.to_q", (4, 3072), (3072, 4))
     | _pair("transformer.transformer_blocks.0.attn.to_q", (4, 3072), (3072, 4)), "flux1"),
    (_pair("lora_unet_double_blocks_0_img_attn_qkv", (4, 3072), (9216, 4), KOHYA)
     | _pair("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", (4, 768), (768, 4), KOHYA), "flux1"),
    (_pair("double_blocks.0.processor.qkv_lora1", (4, 3072), (9216, 4), ("down", "up")), "flux1"),
    (_pair("diffusion_model.double_blocks.0.img_attn.qkv", (4, 3072), (9216, 4))
     | _pair("diffusion_model.single_blocks.0.linear1", (4, 3072), (21504, 4)), "flux1"),
    (_pair("diffusion_model.single_blocks.0.linear1", (4, 3072), (27648, 4)), "flux2"),  # q, k, v + gated MLP
    (_pair("transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj", (4, 3072), (27648, 4)), "flux2"),
    (_pair("transformer.transformer_blocks.0.attn2.to_q", (4, 1536), (1536, 4)), "sd3"),  # SD 3.5 Medium
    (_pair("transformer.transformer_blocks.3.attn.to_q", (4, 2432), (2432, 4)), "sd3"),  # SD 3.5 Large's width
    (_pair("diffusion_model.joint_blocks.0.x_block.attn.qkv", (4, 2432), (7296, 4)), "sd3"),
    (_pair("transformer.layers.0.attention.to_q", (4, 3840), (3840, 4)), "zimage"),
    (_pair("diffusion_model.layers.0.attention.qkv", (4, 3840), (11520, 4)), "zimage"),
    (_pair("transformer.transformer_blocks.0.img_mlp.net.0.proj", (4, 3072), (12288, 4)), "qwen_image"),
    (_pair("diffusion_model.transformer_blocks.0.txt_mod.1", (4, 3072), (18432, 4)), "qwen_image"),
    (_pair("transformer.transformer_blocks.40.attn.to_q", (4, 3072), (3072, 4)), "qwen_image"),  # > FLUX's 19
], ids=["flux-diffusers", "flux-kohya-with-clip", "flux-xlabs", "flux-bfl", "flux2-bfl", "flux2-diffusers",
        "sd35-medium-diffusers", "sd35-large-width", "sd3-comfyui", "zimage-diffusers", "zimage-comfyui",
        "qwen-diffusers", "qwen-comfyui", "qwen-deep-block"])
def test_transformer_lora_families_are_told_from_headers(tmp_path, shapes, family):
    path = _header_file(tmp_path / "style.safetensors", shapes)
    info = inspect_model(path)
    assert (info.kind, info.family) == ("lora", family)  # a LoRA (never "an incomplete FLUX transformer")
    with pytest.raises(UnsupportedModel, match=r"<lora:style:0\.8>"):
        check_model(path)


def test_a_joint_block_lora_says_its_family_in_its_training_metadata(tmp_path):
    shapes = _pair("transformer.transformer_blocks.0.attn.to_q", (4, 64), (64, 4))
    assert inspect_model(_header_file(tmp_path / "a.safetensors", shapes)).family == ""  # the names alone cannot tell
    tagged = _header_file(tmp_path / "b.safetensors", shapes, {"modelspec.architecture": "flux-1-dev/lora"})
    assert inspect_model(tagged).family == "flux1"


def test_the_new_families_declare_loras():
    for name in ("flux", "flux2", "sd3", "zimage", "qwen_image"):
        family = next(f for f in families.families() if f.name == name)
        assert "lora" in family.capabilities(_info_for(family)).addons


def _info_for(family):
    from engine.api import ModelInfo

    fam = {"flux": "flux1", "flux2": "flux2", "sd3": "sd3", "zimage": "zimage", "qwen_image": "qwen_image"}[family.name]
    return ModelInfo(path="/nowhere", name="x", format="diffusers", family=fam, kind="checkpoint", variant="")


# ------------------------------------------------------------------------------------ end to end


def _engine(folder: Path):
    from engine.engine import Engine
    from engine.models import ModelLibrary

    return Engine(device="cpu", library=ModelLibrary([str(folder)], include_defaults=False))


def _run(engine, model: Path, prompt: str, **kw):
    request = GenerationRequest(prompt=prompt, model=str(model), seed=3, steps=2, width=64, height=64, **kw)
    result = engine.generate(request)
    return np.asarray(result.images[0].convert("RGB")).astype(int), result


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    from engine.families.flux.testmodel import make_flux_test_model

    root = tmp_path_factory.mktemp("flux-loras")
    model = make_flux_test_model(root / "flux1-dev")
    loras = root / "loras"
    make_transformer_lora(loras / "ink_diffusers.safetensors", model, "diffusers", seed=1)
    make_transformer_lora(loras / "ink_kohya.safetensors", model, "kohya", seed=2, clip=True)  # + CLIP-L layers
    make_transformer_lora(loras / "ink_bfl.safetensors", model, "comfyui", seed=2, clip=True)  # BFL names
    make_kind_file(loras / "sd_detail.safetensors", "lora", "sd1")
    return model, loras, _engine(loras)


def test_flux_loras_in_two_formats_change_the_image_are_recorded_and_switch_off(flux):
    model, _loras, engine = flux
    plain, _ = _run(engine, model, "a red fox in snow")
    seen = {}
    for layout in ("diffusers", "kohya"):
        pixels, result = _run(engine, model, f"a red fox in snow <lora:ink_{layout}:0.8>")
        assert np.abs(pixels - plain).mean() > 2, layout
        assert not result.notices
        hashes = dict(result.params)["Lora hashes"]
        assert hashes.startswith(f"ink_{layout}: ") and len(hashes.split(": ")[1]) == 12
        seen[layout] = pixels
    assert np.abs(seen["diffusers"] - seen["kohya"]).mean() > 2  # two different LoRAs, two different images
    again, result = _run(engine, model, "a red fox in snow")
    assert np.array_equal(again, plain)  # no LoRA in the prompt: the model's own pixels, bit for bit
    assert "Lora hashes" not in dict(result.params)


def test_a_lora_on_the_text_encoder_is_not_hidden_by_the_prompt_cache(flux):
    """The kohya LoRA changes CLIP-L too: the prompt's encoding from before it was applied (same text)
    must not be reused, or its text-encoder layers would silently do nothing."""
    model, loras, engine = flux
    _run(engine, model, "a red fox in snow")  # this text's plain encoding is now the cached one
    after_plain, _ = _run(engine, model, "a red fox in snow <lora:ink_kohya:0.8>")
    first, _ = _run(_engine(loras), model, "a red fox in snow <lora:ink_kohya:0.8>")  # nothing cached
    assert np.array_equal(after_plain, first)


def test_two_flux_loras_at_once_with_their_weights(flux):
    model, _loras, engine = flux
    one, _ = _run(engine, model, "a fox <lora:ink_diffusers:0.8>")
    both, result = _run(engine, model, "a fox <lora:ink_diffusers:0.8> <lora:ink_kohya:0.5>")
    lighter, _ = _run(engine, model, "a fox <lora:ink_diffusers:0.8> <lora:ink_kohya:0.2>")
    assert np.abs(both - one).mean() > 1 and np.abs(both - lighter).mean() > 0.5
    hashes = dict(result.params)["Lora hashes"]
    assert hashes.startswith("ink_diffusers: ") and ", ink_kohya: " in hashes


def test_a_bfl_named_flux_lora_is_the_same_lora_as_its_kohya_twin(flux):
    model, _loras, engine = flux
    kohya, _ = _run(engine, model, "a fox <lora:ink_kohya:0.8>")
    bfl, result = _run(engine, model, "a fox <lora:ink_bfl:0.8>")
    assert not result.notices
    assert np.abs(bfl - kohya).max() <= 1  # same weights, renamed: the same image (float rounding aside)
    adapters = engine.runner.pipelines()[0].get_list_adapters()
    assert len(adapters.get("text_encoder", [])) == 2  # both files' CLIP-L layers went onto CLIP-L too


def test_a_lora_of_another_family_is_left_out_with_a_notice(flux):
    model, _loras, engine = flux
    plain, _ = _run(engine, model, "a fox")
    pixels, result = _run(engine, model, "a fox <lora:sd_detail:0.8>")
    assert "LoRA “sd_detail” is for SD 1.x but the model is FLUX.1: it was left out." in result.notices
    assert np.array_equal(pixels, plain) and "Lora hashes" not in dict(result.params)


def test_a_flux_lora_image_regenerates_from_its_metadata(flux, tmp_path):
    from engine.metadata import read_metadata
    from engine.outputs import save_image

    model, _loras, engine = flux
    pixels, result = _run(engine, model, "a fox <lora:ink_kohya:0.7>")
    meta = read_metadata(save_image(result, 0, tmp_path / "fox.png"))
    assert 'Lora hashes: "ink_kohya: ' in meta.raw["parameters"]
    request = meta.to_request(model=str(model))
    assert "<lora:ink_kohya:0.7>" in request.prompt
    again = engine.generate(request)
    assert np.array_equal(np.asarray(again.images[0].convert("RGB")).astype(int), pixels)


def _sd35(dest):
    from engine.families.sd3.testmodel import make_sd3_test_model

    return make_sd3_test_model(dest, "sd35-medium")


def _zimage(dest):
    from engine.families.zimage.testmodel import make_zimage_test_model

    return make_zimage_test_model(dest)


def _flux2(dest):
    from engine.families.flux2.testmodel import make_flux2_test_model

    return make_flux2_test_model(dest)


def _qwen(dest):
    from engine.families.qwen_image.testmodel import make_qwen_image_test_model

    return make_qwen_image_test_model(dest)


@pytest.mark.parametrize("make,layout,family", [(_sd35, "diffusers", "sd3"), (_zimage, "diffusers", "zimage"),
                                                (_qwen, "comfyui", "qwen_image"), (_flux2, "diffusers", "flux2")],
                         ids=["sd35-diffusers", "zimage-diffusers", "qwen-image-comfyui", "flux2-klein-diffusers"])
def test_a_lora_changes_the_image_of_each_family(tmp_path, make, layout, family):
    model = make(tmp_path / "model")
    lora = make_transformer_lora(tmp_path / "loras" / "style.safetensors", model, layout)
    assert inspect_model(lora).family == family
    engine = _engine(tmp_path / "loras")
    plain, _ = _run(engine, model, "a lighthouse")
    styled, result = _run(engine, model, "a lighthouse <lora:style:0.9>")
    assert np.abs(styled - plain).mean() > 1 and not result.notices
    assert dict(result.params)["Lora hashes"].startswith("style: ")
    back, _ = _run(engine, model, "a lighthouse")
    assert np.array_equal(back, plain)


def test_a_kohya_sd35_lora_is_its_weights_merged_as_diffusers_converts_them(tmp_path):
    """diffusers' SD3 loader renames no original-MMDiT-named LoRA (kohya's ``lora_unet_joint_blocks_…``):
    Easel's renaming must give the image of the model whose original-named weights had the LoRA merged
    in and were then converted by diffusers' own checkpoint converter."""
    import shutil

    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers
    from safetensors.torch import load_file

    from diffusers import StableDiffusion3Pipeline

    from engine.families.sd3.testmodel import original_layout

    model = _sd35(tmp_path / "model")
    lora = make_transformer_lora(tmp_path / "loras" / "kohya_style.safetensors", model, "kohya", scale=0.2)
    assert inspect_model(lora).family == "sd3"
    transformer = SD3Transformer2DModel.from_pretrained(model / "transformer")
    original = {k.removeprefix("model.diffusion_model."): v for k, v in
                original_layout(StableDiffusion3Pipeline.from_pretrained(model)).items()
                if k.startswith("model.diffusion_model.")}
    tensors = load_file(lora)
    kohya_names = {"lora_unet_" + k.removesuffix(".weight").replace(".", "_"): k for k in original}
    merged_layers = 0
    for key, down in tensors.items():
        if key.endswith(".lora_down.weight"):
            base = key.removesuffix(".lora_down.weight")
            up, alpha = tensors[f"{base}.lora_up.weight"], float(tensors[f"{base}.alpha"])
            original[kohya_names[base]] = original[kohya_names[base]] + (up @ down) * (alpha / down.shape[0])
            merged_layers += 1
    assert merged_layers >= 10 and any("attn2" in k for k in tensors)  # Medium's dual attention too
    merged = SD3Transformer2DModel.from_config(transformer.config)
    merged.load_state_dict(convert_sd3_transformer_checkpoint_to_diffusers(original))
    merged_model = tmp_path / "merged"
    shutil.copytree(model, merged_model)
    merged.save_pretrained(merged_model / "transformer", safe_serialization=True)

    engine = _engine(tmp_path / "loras")
    plain, _ = _run(engine, model, "a lighthouse")
    styled, result = _run(engine, model, "a lighthouse <lora:kohya_style:1>")
    assert not result.notices and np.abs(styled - plain).mean() > 1
    expected, _ = _run(engine, merged_model, "a lighthouse")
    assert np.abs(styled - expected).max() <= 2  # the same model (float rounding aside)


def test_a_flux_lora_applies_to_a_gguf_transformer_too(flux, tmp_path):
    from engine.families.flux.testmodel import make_flux_gguf_test_model

    _model, loras, _engine_ = flux
    gguf = make_flux_gguf_test_model(tmp_path / "ComfyUI")  # ComfyUI's split layout, the transformer as Q8_0
    engine = _engine(loras)
    plain, _ = _run(engine, gguf, "a fox")
    styled, result = _run(engine, gguf, "a fox <lora:ink_kohya:0.8>")
    assert np.abs(styled - plain).mean() > 2 and not result.notices
    assert dict(result.params)["Lora hashes"].startswith("ink_kohya: ")
    assert np.array_equal(_run(engine, gguf, "a fox")[0], plain)


def test_a_lora_that_fits_no_layer_is_left_out_with_a_notice(flux, tmp_path):
    model, _loras, _engine_ = flux
    folder = tmp_path / "loras"
    folder.mkdir()
    # An SD UNet LoRA whose header does not say which SD (no cross-attention layer): it is tried, fits nothing.
    _header_file(folder / "elsewhere.safetensors", _pair("unet.mid_block.attentions.0.proj_in", (4, 64), (64, 4)))
    assert inspect_model(folder / "elsewhere.safetensors").family == ""
    engine = _engine(folder)
    plain, _ = _run(engine, model, "a fox")
    pixels, result = _run(engine, model, "a fox <lora:elsewhere:1>")
    assert any("LoRA “elsewhere” fits no layer of this model" in n for n in result.notices)
    assert np.array_equal(pixels, plain) and "Lora hashes" not in dict(result.params)

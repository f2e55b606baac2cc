"""Z-Image (Turbo and Base) as a user meets it: the folder is recognised and Turbo told from Base, each
runs with its own rules (Turbo: no CFG whatever is asked; Base: CFG and the negative prompt matter),
Easel's image is the pipeline's own, sizes off the 16 px grid are made on it and brought back, a lone
transformer file is named as Z-Image and says what else it needs, and the CLI works end to end.
The contract suite (test_family_contract.py) covers progress, cancel, presets, OOM and regenerate.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import GenerationRequest, Mode, UnsupportedModel
from engine.cli import main
from engine.files.probe import check_model, inspect_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"turbo": folder, "base": folder}: the two tiny test models, written once."""
    root = tmp_path_factory.mktemp("zimage")
    tests = families.test_models()
    return {"turbo": tests["zimage-turbo"][1].write(root / "Z-Image-Turbo-tiny", "diffusers"),
            "base": tests["zimage"][1].write(root / "Z-Image-tiny", "diffusers")}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from engine.engine import Engine

    return Engine(device="cpu", state_dir=tmp_path_factory.mktemp("state"))


def _request(model, **changes) -> GenerationRequest:
    fields = dict(prompt="a red fox in the snow", model=str(model), seed=11, steps=3, width=64, height=64)
    fields.update(changes)
    return GenerationRequest(**fields)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB")).astype(np.int16)


def _source():
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")


# ---------------------------------------------------------------------------------------- tokenizer


def test_the_tiny_qwen_tokenizer_applies_qwen3s_chat_template_with_whole_special_tokens(tmp_path):
    from transformers import AutoTokenizer

    from engine.testencoders import qwen_tokenizer

    qwen_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))  # as the pipeline loads it
    assert type(tok).__name__ == "Qwen2Tokenizer"
    text = tok.apply_chat_template([{"role": "user", "content": "a cat on a windowsill"}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=True)
    assert text == "<|im_start|>user\na cat on a windowsill<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, padding="max_length", max_length=40).input_ids
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens.count("<|im_start|>") == 2 and tokens.count("<|im_end|>") == 1  # one id each, never split
    assert ids[-1] == tok.pad_token_id == 0
    assert tok.decode([i for i in ids if i != 0], skip_special_tokens=True).startswith("user\na cat")


# ------------------------------------------------------------------------------- folder and defaults


def test_turbo_and_base_are_told_apart_with_their_own_defaults(models, tmp_path):
    turbo, base = inspect_model(models["turbo"]), inspect_model(models["base"])
    assert (turbo.family, turbo.variant, turbo.problem) == ("zimage", "turbo", None)
    assert (base.family, base.variant, base.problem) == ("zimage", "", None)
    t, b = families.capabilities(turbo), families.capabilities(base)
    assert families.family_label(turbo) == families.family_label(base) == "Z-Image"
    assert (t.defaults["steps"], t.defaults["guidance_scale"]) == (9, 0.0)
    assert "guidance_scale" not in t.parameters and "CFG" in t.reasons["guidance_scale"]
    assert "negative_prompt" not in t.parameters
    assert 28 <= b.defaults["steps"] <= 50 and b.defaults["guidance_scale"] > 1
    assert {"guidance_scale", "negative_prompt"} <= set(b.parameters)
    for caps in (t, b):
        assert not caps.samplers and "sampler" not in caps.parameters and caps.reasons["sampler"]
        assert caps.native == (1024, 1024) and caps.size_step == 16
        assert caps.latent_space == "zimage" and caps.memory_thresholds

    # A Hugging Face cache snapshot is named after its repo, and Turbo found from it.
    snapshot = tmp_path / "hub" / "models--Tongyi-MAI--Z-Image-Turbo" / "snapshots" / ("a" * 40)
    shutil.copytree(models["base"], snapshot)  # the weights do not say Turbo; the repo does
    info = check_model(snapshot)
    assert (info.name, info.variant) == ("Tongyi-MAI/Z-Image-Turbo", "turbo")


def test_an_incomplete_folder_says_what_is_missing(models, tmp_path):
    broken = tmp_path / "Z-Image-Turbo-broken"
    shutil.copytree(models["turbo"], broken)
    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(Exception) as caught:
        check_model(broken)
    assert "text_encoder/" in str(caught.value) and "\n" not in str(caught.value)


# ------------------------------------------------------------------------------------ generation


def test_the_image_is_the_pipelines_own(models, engine):
    """Easel's decode (guard, FLUX VAE shift factor) and callbacks change nothing: the same pixels as
    ZImagePipeline run directly with the same seed."""
    import diffusers
    import torch

    result = engine.generate(_request(models["turbo"]))
    pipe = diffusers.ZImagePipeline.from_pretrained(models["turbo"], local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    direct = pipe(prompt="a red fox in the snow", height=64, width=64, num_inference_steps=3, guidance_scale=0.0,
                  generator=torch.Generator("cpu").manual_seed(11)).images[0]
    assert np.abs(_pixels(result) - np.asarray(direct).astype(np.int16)).max() <= 1
    assert _pixels(result).std() > 5  # an image, not a flat field


def test_turbo_runs_without_cfg_whatever_the_request_says(models, engine):
    plain = engine.generate(_request(models["turbo"], guidance_scale=0.0))
    asked = engine.generate(_request(models["turbo"], guidance_scale=5.0, negative_prompt="blurry"))
    assert np.array_equal(_pixels(plain), _pixels(asked))
    assert asked.request.guidance_scale == 0.0 and asked.request.negative_prompt == ""  # what the metadata records
    assert any("negative prompt" in n for n in asked.notices)


def test_base_uses_cfg_and_the_negative_prompt(models, engine):
    guided = engine.generate(_request(models["base"], guidance_scale=4.0))
    unguided = engine.generate(_request(models["base"], guidance_scale=0.0))
    negative = engine.generate(_request(models["base"], guidance_scale=4.0, negative_prompt="a city street at night"))
    assert not np.array_equal(_pixels(guided), _pixels(unguided))
    assert not np.array_equal(_pixels(guided), _pixels(negative))
    assert guided.request.guidance_scale == 4.0 and not guided.notices


def test_base_runs_every_mode_and_regenerates_bit_identically(models, engine):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    for mode, extra in ((Mode.TXT2IMG, {}), (Mode.IMG2IMG, {"init_image": _source(), "strength": 0.7}),
                        (Mode.INPAINT, {"init_image": _source(), "mask": mask, "strength": 1.0})):
        first = engine.generate(_request(models["base"], mode=mode, guidance_scale=3.0, **extra))
        again = engine.generate(_request(models["base"], mode=mode, guidance_scale=3.0, **extra))
        assert first.images[0].size == (64, 64)
        assert np.array_equal(_pixels(first), _pixels(again)), mode
        if mode is Mode.INPAINT:  # outside the mask the source stays
            kept = np.asarray(first.images[0])[:8, :8].astype(np.int16) - np.asarray(_source())[:8, :8]
            assert np.abs(kept).max() <= 2


def test_it_runs_in_bf16_where_the_engine_would_pick_fp16():
    import torch

    from engine.devices import bf16_for_fp16

    assert bf16_for_fp16("mps", torch.float16) == torch.bfloat16
    assert bf16_for_fp16("cpu", torch.float32) == torch.float32


def test_a_size_off_the_16_px_grid_is_made_on_the_grid_and_brought_back(models, engine):
    result = engine.generate(_request(models["turbo"], width=72, height=64))
    assert result.images[0].size == (72, 64)
    assert any("16 px grid" in n and "80×64" in n for n in result.notices)


def test_the_preview_reads_all_16_latent_channels():
    import torch

    from engine.core.previews import latents_to_preview

    flat = np.asarray(latents_to_preview(torch.zeros(1, 16, 8, 8), "zimage")).astype(int)
    late = torch.zeros(1, 16, 8, 8)
    late[0, 13] = 3.0  # a channel the 4-channel SD map never looks at
    lit = np.asarray(latents_to_preview(late, "zimage")).astype(int)
    assert np.abs(lit - flat).max() > 20
    assert np.asarray(latents_to_preview(late, "sd")).std() == 0  # SD's map: blind to it


# --------------------------------------------------------------------------------- single files


@pytest.mark.parametrize("comfyui", [False, True], ids=["official-names", "comfyui-prefix"])
def test_a_lone_transformer_file_is_named_z_image_and_says_what_it_needs(models, tmp_path, comfyui, engine):
    from engine.families.zimage.testmodel import write_transformer_file

    path = write_transformer_file(models["turbo"], tmp_path / "diffusion_models" / "z_image_turbo_bf16.safetensors",
                                  comfyui=comfyui)
    info = inspect_model(path)
    assert info.family == "zimage" and families.family_label(info) == "Z-Image"
    # The first missing part of its split layout, and where it goes (tests/engine/test_zimage_files.py: the rest).
    assert "qwen_3_4b" in info.problem and "text_encoders" in info.problem and "\n" not in info.problem
    with pytest.raises(UnsupportedModel):
        check_model(path)
    with pytest.raises(UnsupportedModel) as caught:
        engine.generate(_request(path))
    assert "Z-Image transformer" in str(caught.value) and "\n" not in str(caught.value)


def test_other_files_are_never_taken_for_z_image(tmp_path, tiny_models):
    from safetensors.torch import save_file
    import torch

    sd = inspect_model(tiny_models.get())  # an SD 1.5 diffusers folder
    assert sd.family == "sd1"

    def t():
        return torch.zeros(1)

    # Lumina 2 (the DiT Z-Image grew from): its blocks modulate through adaLN_modulation.1.
    lumina = tmp_path / "lumina2.safetensors"
    save_file({"layers.0.adaLN_modulation.1.weight": t(), "cap_embedder.0.weight": t(), "x_embedder.weight": t()}, str(lumina))
    assert inspect_model(lumina).family != "zimage"
    flux = tmp_path / "flux.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": t(), "layers.0.adaLN_modulation.0.weight": t()}, str(flux))
    assert inspect_model(flux).family != "zimage"
    control = tmp_path / "Z-Image-Turbo-Fun-Controlnet-Union.safetensors"
    save_file({"control_layers.0.adaLN_modulation.0.weight": t(), "control_all_x_embedder.2-1.weight": t()}, str(control))
    info = inspect_model(control)  # a control model for Z-Image, never its transformer
    assert (info.kind, info.family, info.variant) == ("controlnet", "zimage", "union") and "ControlNet" in info.problem


# -------------------------------------------------------------------------------------------- CLI


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_lists_writes_and_runs_z_image(tmp_path, capsys, no_network):
    code, out, _ = _run(capsys, "make-test-model", "--list")
    assert code == 0 and "zimage-turbo diffusers" in out and "zimage diffusers" in out
    model = tmp_path / "Z-Image-Turbo-cli"
    code, out, err = _run(capsys, "make-test-model", model, "--family", "zimage-turbo")
    assert code == 0, err
    assert json.loads((model / "model_index.json").read_text())["_class_name"] == "ZImagePipeline"

    first = tmp_path / "first.png"
    code, out, err = _run(capsys, "generate", "--model", model, "--prompt", "a (red:1.2) fox", "--steps", "3",
                          "--seed", "5", "--width", "64", "--height", "64", "--out", first)
    assert code == 0, err
    assert first.is_file()
    assert "do not apply" in out + err  # the weighting notice, on the terminal
    again = tmp_path / "again.png"
    code, _, err = _run(capsys, "regenerate", first, "--model", model, "--out", again)
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    code, out, _ = _run(capsys, "info", first, "--json")
    assert json.loads(out)["request"]["guidance_scale"] == 0.0
    parameters = Image.open(first).text["parameters"]  # what A1111 and other tools read
    assert "CFG scale: 0," in parameters and "Sampler:" not in parameters

    source, mask = tmp_path / "source.png", tmp_path / "mask.png"
    _source().save(source)
    m = Image.new("L", (64, 64), 0)
    m.paste(255, (16, 16, 48, 48))
    m.save(mask)
    edited = tmp_path / "edited.png"
    code, _, err = _run(capsys, "img2img", "--model", model, "--prompt", "a fox", "--init", source, "--steps", "3",
                        "--seed", "5", "--out", edited)
    assert code == 0, err
    assert Image.open(edited).size == (64, 64)
    painted = tmp_path / "painted.png"
    code, _, err = _run(capsys, "inpaint", "--model", model, "--prompt", "a fox", "--init", source, "--mask", mask,
                        "--steps", "3", "--seed", "5", "--out", painted)
    assert code == 0, err
    assert Image.open(painted).size == (64, 64)
    assert no_network == []

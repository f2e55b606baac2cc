"""FLUX.1 [dev] and [schnell] through the real loaders, the Engine and the `easel` CLI, with tiny
random-weight models built from the bundled real configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import GenerationRequest, Mode
from engine.cli import main
from engine.files.probe import check_model, inspect_model
from engine.metadata import read_metadata


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flux")
    out = {}
    for name in ("flux1-dev", "flux1-schnell"):
        assert main(["make-test-model", str(root / name), "--family", name]) == 0  # as users run it
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def engine():
    from engine.engine import Engine

    return Engine(device="cpu")


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_make_test_model_lists_every_variant_in_every_layout(capsys):
    assert main(["make-test-model", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("flux1-dev", "flux1-schnell", "flux1-fill", "flux1-kontext"):
        assert f"{name} diffusers,comfyui,gguf,single-file" in lines


def test_dev_and_schnell_are_told_apart_with_their_own_defaults(models):
    dev, schnell = check_model(models["flux1-dev"]), check_model(models["flux1-schnell"])
    assert (dev.family, dev.variant, schnell.variant) == ("flux1", "dev", "schnell")
    dev_caps, schnell_caps = families.capabilities(dev), families.capabilities(schnell)
    assert dev_caps.defaults == {"width": 1024, "height": 1024, "steps": 28, "guidance_scale": 3.5}
    assert schnell_caps.defaults["steps"] == 4 and schnell_caps.defaults["guidance_scale"] == 0.0
    assert "guidance_scale" in dev_caps.parameters and "guidance_scale" not in schnell_caps.parameters
    for caps in (dev_caps, schnell_caps):
        assert caps.samplers == () and caps.size_step == 16 and caps.latent_space == "flux"
        assert "negative_prompt" not in caps.parameters and "guidance-distilled" in caps.reasons["negative_prompt"]
        assert "sampler" in caps.reasons
    assert "without guidance" in schnell_caps.reasons["guidance_scale"]


def test_a_folder_missing_its_t5_says_so_in_one_line(models, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(models["flux1-dev"], broken)
    shutil.rmtree(broken / "text_encoder_2")
    info = inspect_model(broken)
    assert info.problem == "incomplete FLUX.1 folder: missing text_encoder_2/"


def test_other_transformers_are_named_not_misloaded(models, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(models["flux1-dev"], other)
    config = json.loads((other / "transformer/config.json").read_text())
    (other / "transformer/config.json").write_text(json.dumps({**config, "in_channels": 128}))
    assert "takes 128 input channels (64 = text to image; 384 = FLUX.1 Fill)" in inspect_model(other).problem


def test_cli_txt2img_img2img_inpaint_and_regenerate(models, tmp_path, capsys):
    model = str(models["flux1-dev"])
    out = tmp_path / "out"
    # 72 px is off FLUX's 16 px grid: made at 80 and cropped back, with a notice.
    assert main(["generate", "--model", model, "--prompt", "a (red:1.3) fox", "--width", "72", "--height", "64",
                 "--steps", "3", "--seed", "11", "--out", str(out / "t.png")]) == 0
    err = capsys.readouterr().err
    assert "16 px grid" in err and "Prompt weights" in err
    source = out / "t.png"
    assert Image.open(source).size == (72, 64)
    meta = read_metadata(source)
    text = meta.raw["parameters"]
    assert "Steps: 3" in text and "CFG scale: 3.5" in text and "Sampler:" not in text
    assert "(red:1.3)" in meta.fields["prompt"]  # the prompt as written is kept; the encoder got plain text

    assert main(["regenerate", str(source), "--model", model, "--out", str(out / "again.png")]) == 0
    assert np.array_equal(_pixels(source), _pixels(out / "again.png"))

    assert main(["img2img", "--model", model, "--prompt", "a fox", "--init", str(source), "--steps", "3",
                 "--strength", "0.6", "--seed", "2", "--out", str(out / "i.png")]) == 0
    assert Image.open(out / "i.png").size == (72, 64)
    assert not np.array_equal(_pixels(out / "i.png"), _pixels(source))

    mask = Image.new("L", (72, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(tmp_path / "mask.png")
    assert main(["inpaint", "--model", model, "--prompt", "a fox", "--init", str(source), "--mask",
                 str(tmp_path / "mask.png"), "--steps", "3", "--mask-blur", "0", "--seed", "2",
                 "--out", str(out / "p.png")]) == 0
    painted, original = _pixels(out / "p.png"), _pixels(source)
    keep = np.asarray(mask) == 0
    assert np.array_equal(painted[keep], original[keep])  # outside the mask: the source, bit for bit
    assert not np.array_equal(painted[~keep], original[~keep])


def test_schnell_runs_without_guidance_and_a_negative_prompt_is_left_out_with_a_notice(models, engine):
    request = GenerationRequest(prompt="a fox", negative_prompt="blurry", model=str(models["flux1-schnell"]),
                                steps=2, width=64, height=64, guidance_scale=0.0, seed=4)
    result = engine.generate(request)
    assert result.images[0].size == (64, 64) and result.seeds == (4,)
    assert any("takes no negative prompt" in n for n in result.notices)
    # Guidance does not exist for schnell: another value makes the same image.
    again = engine.generate(request.replace(guidance_scale=7.0))
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(again.images[0]))


def test_dev_guidance_is_the_distilled_guidance_input(models, engine):
    request = GenerationRequest(prompt="a fox", model=str(models["flux1-dev"]), steps=2, width=64, height=64,
                                guidance_scale=1.0, seed=4)
    low, high = engine.generate(request), engine.generate(request.replace(guidance_scale=6.0))
    assert not np.array_equal(np.asarray(low.images[0]), np.asarray(high.images[0]))


def test_preview_unpacks_the_packed_latents_exactly():
    import torch
    from diffusers import FluxPipeline

    from engine.core.previews import latents_to_preview, unpack_2x2

    latents = torch.randn(1, 16, 10, 6)  # a 48 x 80 px image
    packed = FluxPipeline._pack_latents(latents, 1, 16, 10, 6)
    assert torch.equal(unpack_2x2(packed, 48, 80), latents)
    assert torch.equal(unpack_2x2(packed, 48, 80), FluxPipeline._unpack_latents(packed, 80, 48, 8))
    image = latents_to_preview(unpack_2x2(packed, 48, 80), "flux", (48, 80))
    assert image.size == (48, 80) and len(set(image.getdata())) > 1


# --------------------------------------------------------------------------------------------
# FLUX.1 Fill and Kontext
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fill_kontext(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flux-fk")
    out = {"fill": root / "fill", "kontext": root / "kontext", "fill-comfy": root / "ComfyUI"}
    assert main(["make-test-model", str(out["fill"]), "--family", "flux1-fill"]) == 0
    assert main(["make-test-model", str(out["kontext"]), "--family", "flux1-kontext"]) == 0
    assert main(["make-test-model", str(out["fill-comfy"]), "--family", "flux1-fill", "--layout", "gguf"]) == 0
    return out


def _source(seed: int, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _mask(size=(64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (16, 16, 48, 48))
    return mask


def test_fill_inpaints_only_and_keeps_every_pixel_outside_the_mask(fill_kontext, engine):
    from engine.api import InvalidRequest

    info = check_model(fill_kontext["fill"])
    caps = families.capabilities(info)
    assert (info.variant, caps.label, caps.modes) == ("fill", "FLUX.1 Fill [dev]", (Mode.INPAINT,))
    assert caps.defaults["guidance_scale"] == 30.0
    source = _source(1)
    request = GenerationRequest(prompt="a fox", model=str(fill_kontext["fill"]), mode=Mode.INPAINT, init_image=source,
                                mask=_mask(), mask_blur=0, steps=2, width=64, height=64, guidance_scale=30.0, seed=2)
    result = engine.generate(request)
    painted, original = np.asarray(result.images[0]).astype(int), np.asarray(source).astype(int)
    keep = np.asarray(_mask()) == 0
    assert np.array_equal(painted[keep], original[keep]) and not np.array_equal(painted[~keep], original[~keep])
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(request.replace(mode=Mode.TXT2IMG, init_image=None, mask=None))
    assert "Fill repaints a masked region only" in str(caught.value) and "\n" not in str(caught.value)


def test_fill_as_a_gguf_in_comfyuis_layout_inpaints(fill_kontext, engine):
    transformer = fill_kontext["fill-comfy"] / "models" / "diffusion_models" / "flux1-fill-tiny-Q8_0.gguf"
    info = check_model(transformer)
    assert (info.variant, info.format) == ("fill", "gguf")
    result = engine.generate(GenerationRequest(prompt="a fox", model=str(transformer), mode=Mode.INPAINT,
                                               init_image=_source(1), mask=_mask(), steps=2, width=64, height=64,
                                               guidance_scale=30.0, seed=2))
    assert result.images[0].size == (64, 64)


def test_kontext_edits_the_image_it_is_given(fill_kontext, engine):
    info = check_model(fill_kontext["kontext"])
    caps = families.capabilities(info)
    assert (info.variant, caps.label, caps.defaults["guidance_scale"]) == ("kontext", "FLUX.1 Kontext [dev]", 2.5)
    request = GenerationRequest(prompt="make the sky red", model=str(fill_kontext["kontext"]), mode=Mode.IMG2IMG,
                                init_image=_source(1), steps=2, width=64, height=64, guidance_scale=2.5, seed=2)
    first = engine.generate(request)
    other = engine.generate(request.replace(init_image=_source(9)))
    assert first.images[0].size == (64, 64)
    # The picture is conditioned on the image: another source, another edit (same seed and prompt).
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(other.images[0]))
    again = engine.generate(request)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    # With a mask (FluxKontextInpaintPipeline, which takes a strength): only the masked area changes.
    source = _source(1)
    masked = engine.generate(request.replace(mode=Mode.INPAINT, init_image=source, mask=_mask(), mask_blur=0,
                                             strength=1.0))
    painted, original = np.asarray(masked.images[0]).astype(int), np.asarray(source).astype(int)
    keep = np.asarray(_mask()) == 0
    assert np.array_equal(painted[keep], original[keep]) and not np.array_equal(painted[~keep], original[~keep])
    half = engine.generate(request.replace(mode=Mode.INPAINT, init_image=source, mask=_mask(), mask_blur=0,
                                           strength=0.5))
    assert not np.array_equal(np.asarray(half.images[0]), np.asarray(masked.images[0]))  # the strength is used


def test_fill_stands_in_for_dev_and_schnell_inpainting_and_only_kontext_edits_by_instruction():
    from engine.api import ModelInfo

    def info(name, variant, fmt="diffusers", kind="checkpoint", problem=None):
        return ModelInfo(f"/m/{name}", name, kind, "flux1", fmt, "flow", problem=problem, variant=variant)

    dev, schnell, kontext = info("dev", "dev", "safetensors"), info("schnell", "schnell"), info("kontext", "kontext")
    fills = [info("fill-broken", "fill", problem="truncated"), info("fill-q8", "fill", "gguf", "inpaint"),
             info("fill-st", "fill", "safetensors", "inpaint")]
    library = [dev, schnell, kontext, *fills]
    assert families.inpaint_partner(dev, library).name == "fill-st"  # usable, the same format first
    assert families.inpaint_partner(schnell, library).name == "fill-q8"
    assert families.inpaint_partner(kontext, library) is None  # it inpaints by its instruction itself
    assert families.inpaint_partner(fills[2], library) is None
    assert families.inpaint_partner(dev, [dev, schnell, kontext]) is None
    assert families.instruction_refusal(kontext) == ""
    assert families.instruction_refusal(dev) == "dev (FLUX.1 [dev]) is not an instruction-edit model: use FLUX.1 Kontext, FLUX.2 [klein], FLUX.2 [dev] or Qwen-Image-Edit"

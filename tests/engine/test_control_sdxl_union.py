"""SDXL ControlNet Union models (xinsir's controlnet-union-sdxl-1.0 / ProMax: ``ControlNetUnionModel``)
through the one control mechanism (engine.core.control), with the tiny ``controlnet-sdxl-union`` test model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.api import ControlInput, GenerationRequest, InvalidRequest
from engine.cli import main
from engine.files.probe import inspect_model

UNION = "controlnet-sdxl-union"


def square(size: int = 64, fill="white", ground="black") -> Image.Image:
    im = Image.new("RGB", (size, size), ground)
    ImageDraw.Draw(im).rectangle((size // 4, size // 4, 3 * size // 4 - 1, 3 * size // 4 - 1), fill=fill)
    return im


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(np.int16)


def make(engine, model: Path, *controls, **fields):
    base = dict(prompt="a house on a hill", model=str(model), seed=11, steps=2, width=64, height=64)
    base.update(fields)
    return engine.generate(GenerationRequest(**base, controls=tuple(controls)))


def test_sdxl_union_model_is_recognised_in_both_layouts(built):
    for layout in ("diffusers", "single-file"):
        info = inspect_model(str(built(UNION, layout)))
        assert (info.kind, info.family, info.variant) == ("controlnet", "sdxl", "union")


def test_canny_through_the_union_model_steers_and_zero_strength_changes_nothing(engine, built):
    model, net = built("sdxl"), str(built(UNION))
    plain = pixels(make(engine, model))
    canny = make(engine, model, ControlInput("canny", square(), model=net))
    zero = pixels(make(engine, model, ControlInput("canny", square(), model=net, strength=0.0)))
    depth = pixels(make(engine, model, ControlInput("depth", square(), model=net)))
    assert np.abs(pixels(canny) - plain).mean() > 5  # the control visibly changes the image
    assert np.array_equal(zero, plain)  # strength 0: bit for bit the plain image
    assert not np.array_equal(depth, pixels(canny))  # the mode matters: the same image read as depth differs
    never = pixels(make(engine, model, ControlInput("canny", square(), model=net, end=0.0)))
    half = pixels(make(engine, model, ControlInput("canny", square(), model=net, end=0.5)))
    assert np.array_equal(never, plain)  # acting on no step: the plain image
    assert not np.array_equal(half, plain) and not np.array_equal(half, pixels(canny))  # the step range matters
    recorded = canny.request.controls[0]
    assert dict(canny.params)["ControlNet 0"] == (
        f"Module: none, Model: {UNION} [{recorded.model_hash}], Weight: 1, Guidance Start: 0, Guidance End: 1, "
        "Union Control Type: canny/lineart/mlsd")
    # The single file (diffusers' names, as xinsir's diffusion_pytorch_model files are) runs the same
    single = make(engine, model, ControlInput("canny", square(), model=str(built(UNION, "single-file"))))
    assert np.array_equal(pixels(single), pixels(canny))


def test_two_controls_in_one_union_model(engine, built):
    model, net = built("sdxl"), str(built(UNION))
    one = pixels(make(engine, model, ControlInput("canny", square(), model=net)))
    both = make(engine, model, ControlInput("canny", square(), model=net),
                ControlInput("pose", square(fill="black", ground="white"), model=net, strength=0.7))
    assert not np.array_equal(pixels(both), one)
    lines = dict(both.params)
    assert lines["ControlNet 1"].endswith("Weight: 0.7, Guidance Start: 0, Guidance End: 1, Union Control Type: openpose")


def test_union_model_in_img2img_and_inpaint(engine, built):
    from engine.api import Mode

    model, net = built("sdxl"), str(built(UNION))
    source = Image.new("RGB", (64, 64), (90, 140, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    for mode, extra in ((Mode.IMG2IMG, {}), (Mode.INPAINT, {"mask": mask})):
        plain = pixels(make(engine, model, mode=mode, init_image=source, strength=0.8, **extra))
        steered = make(engine, model, ControlInput("canny", square(), model=net), mode=mode, init_image=source,
                       strength=0.8, **extra)
        assert not np.array_equal(pixels(steered), plain)
        assert dict(steered.params)["ControlNet 0"].endswith("Union Control Type: canny/lineart/mlsd")


def test_sd15_model_given_the_sdxl_union_model_is_refused_in_one_line(engine, built):
    with pytest.raises(InvalidRequest) as caught:
        make(engine, built("sd15"), ControlInput("canny", square(), model=str(built(UNION))))
    line = str(caught.value)
    assert "\n" not in line and "for SDXL" in line and "SD 1.x" in line


def test_cli_union_metadata_and_regenerate_bit_identical(built, tmp_path, capsys):
    models = tmp_path / "models" / "ControlNet"
    models.mkdir(parents=True)
    (models / "controlnet-union-sdxl-promax.safetensors").write_bytes(built(UNION, "single-file").read_bytes())
    square(64).save(tmp_path / "shape.png")
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    data = ["--data-dir", str(tmp_path / "data")]
    code = main(["generate", "--model", str(built("sdxl")), "--prompt", "a vase", "--steps", "2", "--seed", "9",
                 "--width", "64", "--height", "64", "--control", f"canny:{tmp_path / 'shape.png'}:0.8:0:0.9",
                 "--control-model", "controlnet-union-sdxl-promax", "--models-dir", str(tmp_path / "models"), "--out", str(first), *data])
    assert code == 0, capsys.readouterr().err
    with Image.open(first) as png:
        parameters, recipe = png.text["parameters"], json.loads(png.text["easel"])
    stored = recipe["request"]["controls"][0]
    assert stored["model"] == "controlnet-union-sdxl-promax.safetensors" and stored["kind"] == "canny"
    assert "Union Control Type: canny/lineart/mlsd" in parameters
    code = main(["regenerate", str(first), "--model", str(built("sdxl")), "--models-dir", str(tmp_path / "models"),
                 "--out", str(again), *data])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))


def test_several_inputs_all_outside_their_step_range_steer_nothing(built):
    """On a step outside every input's range the pipeline gives the one Union model scales of 0 for each
    input: the model then adds nothing to the UNet (not its reading of the bare latent)."""
    import torch

    from engine.core import control

    net = control.load_controlnet(inspect_model(str(built(UNION))), None, torch.float32)
    c = net.config
    pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
    cond = torch.rand(1, 3, 64, 64)
    kwargs = dict(encoder_hidden_states=torch.randn(1, 8, c.cross_attention_dim), controlnet_cond=[cond, cond],
                  control_type=torch.tensor([[1.0, 0, 0, 1, 0, 0, 0, 0]]), control_type_idx=[0, 3],
                  added_cond_kwargs={"text_embeds": torch.randn(1, pooled), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])},
                  return_dict=False)
    sample = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        down, mid = net(sample, 500, conditioning_scale=[0.0, 0.0], **kwargs)
        acting, _ = net(sample, 500, conditioning_scale=[1.0, 0.0], **kwargs)
    assert all(not d.any() for d in down) and not mid.any()
    assert any(d.abs().sum() > 0 for d in acting)

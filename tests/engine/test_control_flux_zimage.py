"""Control inputs on FLUX.1 and Z-Image, as a user meets them: a canny / depth control changes the image,
strength 0 and an empty step range change nothing (bit for bit), a job without controls after one with
them is the plain image again, the step range matters, a FLUX.1 Union model is told each control's mode,
several FLUX.1 controls act at once (Z-Image takes one and says so), a control model of another family is
refused in one line either way, the control models are recognised from their headers and never taken for
checkpoints, and the metadata regenerates the same pixels through the CLI.

The tiny control models are the ``controlnet-flux1-canny`` / ``controlnet-flux1-union`` /
``controlnet-zimage-union`` test models: the real architectures sized to the tiny test transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import families
from engine.api import ControlInput, GenerationRequest, InvalidRequest, Mode, ModelInfo, UnsupportedModel
from engine.cli import main
from engine.files.probe import inspect_model

CONTROL_FOR = {"flux1-dev": "controlnet-flux1-canny", "zimage-turbo": "controlnet-zimage-union"}


def square(size: int = 64, fill="white", ground="black") -> Image.Image:
    im = Image.new("RGB", (size, size), ground)
    ImageDraw.Draw(im).rectangle((size // 4, size // 4, 3 * size // 4 - 1, 3 * size // 4 - 1), fill=fill)
    return im


def disc(size: int = 64) -> Image.Image:
    im = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(im).ellipse((8, 8, size - 9, size - 9), fill=(200, 200, 200))
    return im


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(np.int16)


def make(engine, model: Path, *controls, **fields):
    base = dict(prompt="a house on a hill", model=str(model), seed=11, steps=3, width=64, height=64)
    base.update(fields)
    return engine.generate(GenerationRequest(**base, controls=tuple(controls)))


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("generator", ["flux1-dev", "zimage-turbo"])
def test_control_steers_and_zero_strength_or_control_off_changes_nothing(engine, built, generator):
    model, net = built(generator), str(built(CONTROL_FOR[generator]))
    plain = pixels(make(engine, model))
    full = make(engine, model, ControlInput("canny", square(), model=net))
    depth = pixels(make(engine, model, ControlInput("depth", disc(), model=net)))
    zero = pixels(make(engine, model, ControlInput("canny", square(), model=net, strength=0.0)))
    after = pixels(make(engine, model))

    assert np.abs(pixels(full) - plain).mean() > 5  # the control visibly changes the image
    assert np.abs(depth - plain).mean() > 5 and not np.array_equal(depth, pixels(full))  # and follows its image
    assert np.array_equal(zero, plain)  # strength 0: bit for bit the image without the control
    assert np.array_equal(after, plain)  # control off again: exactly the image before
    recorded = full.request.controls[0]
    assert recorded.model == str(Path(net).resolve()) and len(recorded.model_hash) == 10
    assert dict(full.params)["ControlNet 0"] == (
        f"Module: none, Model: {CONTROL_FOR[generator]} [{recorded.model_hash}], Weight: 1, Guidance Start: 0, "
        "Guidance End: 1")


@pytest.mark.parametrize("generator", ["flux1-dev", "zimage-turbo"])
def test_the_step_range_is_respected(engine, built, generator):
    two = dict(steps=2)  # end 0.5: the first step only; start 0.5: the second only
    # FLUX.1's pipeline takes the range; Z-Image's has none, and gets it from engine.core.control.step_range
    model, net = built(generator), str(built(CONTROL_FOR[generator]))
    plain = pixels(make(engine, model, **two))
    full = pixels(make(engine, model, ControlInput("canny", square(), model=net), **two))
    never = pixels(make(engine, model, ControlInput("canny", square(), model=net, end=0.0), **two))
    half = pixels(make(engine, model, ControlInput("canny", square(), model=net, end=0.5), **two))
    late = pixels(make(engine, model, ControlInput("canny", square(), model=net, start=0.5), **two))
    assert np.array_equal(never, plain)  # it acts on no step
    for part in (half, late):  # acting on some steps only: neither the plain nor the fully steered image
        assert not np.array_equal(part, plain) and not np.array_equal(part, full)
    assert not np.array_equal(half, late)


def test_flux_union_model_is_told_each_controls_mode(engine, built):
    model, union = built("flux1-dev"), str(built("controlnet-flux1-union"))
    # the same image read as canny edges or as a depth map: the mode alone makes the difference
    canny = make(engine, model, ControlInput("canny", disc(), model=union))
    depth = make(engine, model, ControlInput("depth", disc(), model=union))
    assert not np.array_equal(pixels(canny), pixels(depth))
    assert dict(canny.params)["ControlNet 0"].endswith("Union Control Type: canny")
    assert dict(depth.params)["ControlNet 0"].endswith("Union Control Type: depth")
    # two inputs through one Union model (loaded once), and a canny model beside it
    both = make(engine, model, ControlInput("canny", square(), model=union), ControlInput("depth", disc(), model=union))
    mixed = make(engine, model, ControlInput("canny", square(), model=str(built("controlnet-flux1-canny"))),
                 ControlInput("depth", disc(), model=union, strength=0.7))
    assert not np.array_equal(pixels(both), pixels(canny)) and not np.array_equal(pixels(mixed), pixels(both))
    assert [k for k, _ in mixed.params if k.startswith("ControlNet")] == ["ControlNet 0", "ControlNet 1"]


def test_a_second_flux_control_of_strength_0_changes_nothing(engine, built):
    model, net = built("flux1-dev"), str(built("controlnet-flux1-canny"))
    one = pixels(make(engine, model, ControlInput("canny", square(), model=net)))
    silent = make(engine, model, ControlInput("canny", square(), model=net),
                  ControlInput("canny", disc(), model=net, strength=0))
    assert np.array_equal(pixels(silent), one)


@pytest.mark.parametrize("generator", ["flux1-dev", "zimage-turbo"])
def test_single_file_control_model_steers_like_its_folder(engine, built, generator):
    model = built(generator)
    folder = make(engine, model, ControlInput("canny", square(), model=str(built(CONTROL_FOR[generator]))))
    single = make(engine, model, ControlInput("canny", square(), model=str(built(CONTROL_FOR[generator], "single-file"))))
    # the same weights; its config read offline from the file's shapes and the generator's transformer
    assert np.abs(pixels(folder) - pixels(single)).max() <= 1


def test_flux_control_in_img2img_and_inpaint_keeps_the_unmasked_pixels(engine, built):
    model, net = built("flux1-dev"), str(built("controlnet-flux1-canny"))
    init = Image.new("RGB", (64, 64), (30, 120, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    ctl = ControlInput("canny", square(), model=net)
    plain = pixels(make(engine, model, mode=Mode.IMG2IMG, init_image=init, strength=0.8))
    steered = pixels(make(engine, model, ctl, mode=Mode.IMG2IMG, init_image=init, strength=0.8))
    assert np.abs(steered - plain).mean() > 2
    painted = pixels(make(engine, model, ctl, mode=Mode.INPAINT, init_image=init, mask=mask, strength=1.0, mask_blur=0))
    outside = np.asarray(mask) == 0
    assert np.array_equal(painted[outside], np.asarray(init).astype(np.int16)[outside])


def test_zimage_control_inpaints_and_takes_one_control_and_no_img2img_control(engine, built):
    model, net = built("zimage-turbo"), str(built("controlnet-zimage-union"))
    init = Image.new("RGB", (64, 64), (30, 120, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    ctl = ControlInput("canny", square(), model=net)
    plain = pixels(make(engine, model, mode=Mode.INPAINT, init_image=init, mask=mask, strength=1.0, mask_blur=0))
    painted = pixels(make(engine, model, ctl, mode=Mode.INPAINT, init_image=init, mask=mask, strength=1.0, mask_blur=0))
    outside = np.asarray(mask) == 0
    assert np.array_equal(painted[outside], np.asarray(init).astype(np.int16)[outside])
    assert not np.array_equal(painted, plain)
    for kwargs, words in ((dict(mode=Mode.IMG2IMG, init_image=init, strength=0.8), "in this mode"),
                          ({}, "one control input at a time")):
        extra = () if kwargs else (ControlInput("depth", disc(), model=net),)
        with pytest.raises(InvalidRequest) as caught:
            make(engine, model, ctl, *extra, **kwargs)
        assert words in str(caught.value) and "\n" not in str(caught.value)
    assert make(engine, model).images  # still ready


@pytest.mark.parametrize("generator, net, words", [
    ("sd15", "controlnet-flux1-canny", ("for FLUX.1", "SD 1.x")),
    ("flux1-dev", "controlnet-sd15-canny", ("for SD 1.x", "FLUX.1")),
    ("flux1-dev", "controlnet-zimage-union", ("for Z-Image", "FLUX.1")),
    ("zimage-turbo", "controlnet-flux1-union", ("for FLUX.1", "Z-Image")),
])
def test_wrong_family_control_model_is_refused_in_one_line(engine, built, generator, net, words):
    model = built(generator)
    with pytest.raises(InvalidRequest) as caught:
        make(engine, model, ControlInput("canny", square(), model=str(built(net))))
    line = str(caught.value)
    assert "\n" not in line and all(w in line for w in words), line
    assert make(engine, model).images  # still ready


def test_which_flux_and_zimage_models_take_controls():
    def caps(family, variant):
        return families.capabilities(ModelInfo("/x", "x", "checkpoint", family, "diffusers", variant=variant))

    for variant in ("dev", "schnell"):
        assert {"canny", "depth", "pose", "tile"} <= set(caps("flux1", variant).control_kinds)
    for variant in ("fill", "kontext"):  # their own pipelines have no ControlNet variant
        assert caps("flux1", variant).control_kinds == ()
    assert {"canny", "depth", "pose"} <= set(caps("zimage", "turbo").control_kinds)
    assert "tile" not in caps("zimage", "turbo").control_kinds


# ----------------------------------------------------------------------------- recognition


def test_flux_and_zimage_control_models_are_recognised_and_not_taken_for_checkpoints(built, tmp_path):
    from engine.models import ModelLibrary

    expect = {("controlnet-flux1-canny", "single-file"): ("flux1", "canny", "safetensors"),
              ("controlnet-flux1-canny", "diffusers"): ("flux1", "canny", "diffusers"),
              ("controlnet-flux1-union", "single-file"): ("flux1", "union", "safetensors"),
              ("controlnet-flux1-union", "diffusers"): ("flux1", "union", "diffusers"),
              ("controlnet-zimage-union", "single-file"): ("zimage", "union", "safetensors"),
              ("controlnet-zimage-union", "diffusers"): ("zimage", "union", "diffusers")}
    root = tmp_path / "ComfyUI" / "models" / "controlnet"
    root.mkdir(parents=True)
    import shutil

    for (name, layout), (family, variant, fmt) in expect.items():
        info = inspect_model(str(built(name, layout)))
        assert (info.kind, info.family, info.variant, info.format) == ("controlnet", family, variant, fmt), name
        assert families.family_for(info) is None  # no family runs it as a generator
        target = root / f"{name}-{layout}"
        (shutil.copytree if layout == "diffusers" else shutil.copy)(built(name, layout), target if layout == "diffusers"
                                                                    else target.with_suffix(".safetensors"))
    (tmp_path / "ComfyUI" / "models" / "checkpoints").mkdir()
    library = ModelLibrary([str(tmp_path / "ComfyUI")], include_defaults=False, state_dir=tmp_path / "state")
    entries = [e for e in library.scan() if e.kind == "controlnet"]
    assert len(entries) == 6 and all(e.usable for e in entries), [(e.name, e.reason) for e in entries]
    assert {e.family for e in entries} == {"flux1", "zimage"}
    from engine.core import control

    # the library's choice for a kind: a model named for it first, else a Union model that takes it
    assert Path(control.choose(library, "flux1", "canny").path).name.startswith("controlnet-flux1-canny")
    assert Path(control.choose(library, "flux1", "depth").path).name.startswith("controlnet-flux1-union")
    assert Path(control.choose(library, "zimage", "pose").path).name.startswith("controlnet-zimage-union")
    assert control.choose(library, "zimage", "tile") is None


def test_xlabs_original_layout_is_recognised_and_refused_in_one_line(tmp_path):
    import torch

    from engine.testmodels import save_safetensors

    path = tmp_path / "flux-canny-controlnet-v3.safetensors"
    save_safetensors(path, {"double_blocks.0.img_attn.qkv.weight": torch.zeros(6, 2),
                            "controlnet_blocks.0.weight": torch.zeros(2, 2), "input_hint_block.0.weight": torch.zeros(2, 3, 3, 3),
                            "img_in.weight": torch.zeros(2, 4), "pos_embed_input.weight": torch.zeros(2, 4)})
    info = inspect_model(str(path))
    assert info.kind == "controlnet" and "XLabs" in info.problem and "diffusers version" in info.problem
    from engine.engine import Engine

    with pytest.raises((UnsupportedModel, InvalidRequest)) as caught:
        Engine(device="cpu").generate(GenerationRequest(prompt="a", model=str(path), steps=2, width=64, height=64))
    assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- CLI and metadata


@pytest.mark.parametrize("generator", ["flux1-dev", "zimage-turbo"])
def test_cli_control_metadata_and_regenerate_bit_identical(built, tmp_path, capsys, generator):
    models = tmp_path / "models" / "controlnet"
    models.mkdir(parents=True)
    name = CONTROL_FOR[generator]
    (models / f"{name}.safetensors").write_bytes(built(name, "single-file").read_bytes())
    square(64).save(tmp_path / "shape.png")
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    data = ["--data-dir", str(tmp_path / "data")]
    # no --control-model: the library's control model for the family and kind (a Union model takes canny)
    code = main(["generate", "--model", str(built(generator)), "--prompt", "a vase", "--steps", "3", "--seed", "9",
                 "--width", "64", "--height", "64", "--control", f"canny:{tmp_path / 'shape.png'}:0.8:0:0.9",
                 "--models-dir", str(tmp_path / "models"), "--out", str(first), *data])
    assert code == 0, capsys.readouterr().err
    with Image.open(first) as png:
        parameters, recipe = png.text["parameters"], json.loads(png.text["easel"])
    stored = recipe["request"]["controls"][0]
    assert (stored["kind"], stored["model"], stored["strength"], stored["end"], stored["preprocessor"]) == (
        "canny", f"{name}.safetensors", 0.8, 0.9, "canny")
    assert stored["image_png"] and len(stored["model_hash"]) == 10
    assert f'ControlNet 0: "Module: canny, Model: {name} [{stored["model_hash"]}], Weight: 0.8' in parameters
    code = main(["regenerate", str(first), "--model", str(built(generator)), "--models-dir", str(tmp_path / "models"),
                 "--out", str(again), *data])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))

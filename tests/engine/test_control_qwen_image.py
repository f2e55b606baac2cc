"""Control inputs on Qwen-Image, as a user meets them: InstantX's Union ControlNet changes the image and
follows its image, strength 0 changes nothing (bit for bit), the single file steers like its folder,
several inputs run through the one Union model, img2img / inpaint and the Edit models refuse control in
one line, a control model of another family is refused in one line either way, DiffSynth's blockwise
and InstantX's inpainting ControlNets are recognised and refused, and the metadata regenerates the
same pixels through the CLI. The tiny control model is the ``controlnet-qwen-image-union`` test model
(the real architecture sized to the tiny ``qwen-image`` transformer); every job runs 2 steps at 64 px.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import families
from engine.api import ControlInput, GenerationRequest, InvalidRequest, Mode, ModelInfo, UnsupportedModel
from engine.cli import main
from engine.files.probe import inspect_model

NET = "controlnet-qwen-image-union"


def square(size: int = 64) -> Image.Image:
    im = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(im).rectangle((size // 4, size // 4, 3 * size // 4 - 1, 3 * size // 4 - 1), fill="white")
    return im


def disc(size: int = 64) -> Image.Image:
    im = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(im).ellipse((8, 8, size - 9, size - 9), fill=(200, 200, 200))
    return im


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(np.int16)


def make(engine, model: Path, *controls, **fields):
    base = dict(prompt="a house on a hill", model=str(model), seed=11, steps=2, width=64, height=64)
    base.update(fields)
    return engine.generate(GenerationRequest(**base, controls=tuple(controls)))


def test_qwen_image_control_steers_and_zero_strength_changes_nothing(engine, built):
    model, net = built("qwen-image"), str(built(NET))
    plain = pixels(make(engine, model))
    full = make(engine, model, ControlInput("canny", square(), model=net))
    depth = pixels(make(engine, model, ControlInput("depth", disc(), model=net)))
    zero = pixels(make(engine, model, ControlInput("canny", square(), model=net, strength=0.0)))
    single = pixels(make(engine, model, ControlInput("canny", square(), model=str(built(NET, "single-file")))))
    after = pixels(make(engine, model))

    assert np.abs(pixels(full) - plain).mean() > 5  # the control visibly changes the image
    assert np.abs(depth - plain).mean() > 5 and not np.array_equal(depth, pixels(full))  # and follows its image
    assert np.array_equal(zero, plain)  # strength 0: bit for bit the image without the control
    assert np.array_equal(after, plain)  # control off again: exactly the image before
    # the single file: its config read offline from its shapes and the generator's transformer
    assert np.abs(single - pixels(full)).max() <= 1
    recorded = full.request.controls[0]
    assert recorded.model == str(Path(net).resolve()) and len(recorded.model_hash) == 10
    assert dict(full.params)["ControlNet 0"] == (
        f"Module: none, Model: {NET} [{recorded.model_hash}], Weight: 1, Guidance Start: 0, Guidance End: 1")
    # two inputs through the one Union model (diffusers' QwenImageMultiControlNetModel runs it per input)
    both = make(engine, model, ControlInput("canny", square(), model=net), ControlInput("depth", disc(), model=net))
    assert not np.array_equal(pixels(both), pixels(full))
    assert [k for k, _ in both.params if k.startswith("ControlNet")] == ["ControlNet 0", "ControlNet 1"]


def test_qwen_image_control_only_in_text_to_image(engine, built):
    model, net = built("qwen-image"), str(built(NET))
    init = Image.new("RGB", (64, 64), (30, 120, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    ctl = ControlInput("canny", square(), model=net)
    for kwargs in (dict(mode=Mode.IMG2IMG, init_image=init, strength=0.8),
                   dict(mode=Mode.INPAINT, init_image=init, mask=mask, strength=1.0)):
        with pytest.raises(InvalidRequest) as caught:
            make(engine, model, ctl, **kwargs)
        line = str(caught.value)
        assert "in this mode: use text to image" in line and "image to image" not in line and "\n" not in line
    assert make(engine, model).images  # still ready


def test_which_qwen_image_models_take_controls():
    def caps(variant):
        return families.capabilities(ModelInfo("/x", "x", "checkpoint", "qwen_image", "diffusers", variant=variant))

    assert {"canny", "lineart", "depth", "pose"} == set(caps("").control_kinds)
    for variant in ("edit", "edit-plus"):  # the Edit pipelines have no ControlNet variant
        assert caps(variant).control_kinds == ()


@pytest.mark.parametrize("generator, net, words", [
    ("qwen-image", "controlnet-zimage-union", ("for Z-Image", "Qwen-Image")),
    ("zimage-turbo", NET, ("for Qwen-Image", "Z-Image")),
])
def test_wrong_family_control_model_is_refused_in_one_line(engine, built, generator, net, words):
    model = built(generator)
    with pytest.raises(InvalidRequest) as caught:
        make(engine, model, ControlInput("canny", square(), model=str(built(net))))
    line = str(caught.value)
    assert "\n" not in line and all(w in line for w in words), line


def test_qwen_image_control_models_are_recognised_and_not_taken_for_checkpoints(built, tmp_path):
    from engine.core import control
    from engine.models import ModelLibrary

    root = tmp_path / "ComfyUI" / "models" / "controlnet"
    root.mkdir(parents=True)
    for layout, fmt in (("single-file", "safetensors"), ("diffusers", "diffusers")):
        path = built(NET, layout)
        info = inspect_model(str(path))
        assert (info.kind, info.family, info.variant, info.format) == ("controlnet", "qwen_image", "union", fmt)
        assert families.family_for(info) is None  # no family runs it as a generator
        if layout == "diffusers":
            shutil.copytree(path, root / f"{NET}-folder")
        else:
            shutil.copy(path, root / f"{NET}.safetensors")
    (tmp_path / "ComfyUI" / "models" / "checkpoints").mkdir()
    library = ModelLibrary([str(tmp_path / "ComfyUI")], include_defaults=False, state_dir=tmp_path / "state")
    entries = [e for e in library.scan() if e.kind == "controlnet"]
    assert len(entries) == 2 and all(e.usable and e.family == "qwen_image" for e in entries)
    assert Path(control.choose(library, "qwen_image", "pose").path).name.startswith(NET)  # the Union takes pose
    assert control.choose(library, "qwen_image", "tile") is None


@pytest.mark.parametrize("what, tensors, words", [
    ("blockwise", {"img_in.weight": (8, 64), "controlnet_blocks.0.input_proj.weight": (8, 8),
                   "controlnet_blocks.0.x_rms.weight": (8,)}, "blockwise"),
    ("inpainting", {"img_in.weight": (8, 64), "txt_in.weight": (8, 32), "controlnet_x_embedder.weight": (8, 68),
                    "controlnet_blocks.0.weight": (8, 8), "transformer_blocks.0.img_mod.1.weight": (48, 8)},
     "inpainting ControlNets are not supported"),
])
def test_other_qwen_image_control_formats_are_refused_in_one_line(tmp_path, what, tensors, words):
    import torch

    from engine.engine import Engine
    from engine.testmodels import save_safetensors

    path = tmp_path / f"qwen-image-{what}-controlnet.safetensors"
    save_safetensors(path, {k: torch.zeros(shape) for k, shape in tensors.items()})
    info = inspect_model(str(path))
    assert info.kind == "controlnet" and words in info.problem and families.family_for(info) is None
    with pytest.raises((UnsupportedModel, InvalidRequest)) as caught:
        Engine(device="cpu").generate(GenerationRequest(prompt="a", model=str(path), steps=2, width=64, height=64))
    assert "\n" not in str(caught.value)


def test_cli_qwen_image_control_metadata_and_regenerate_bit_identical(built, tmp_path, capsys):
    models = tmp_path / "models" / "controlnet"
    models.mkdir(parents=True)
    (models / f"{NET}.safetensors").write_bytes(built(NET, "single-file").read_bytes())
    square(64).save(tmp_path / "shape.png")
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    data = ["--data-dir", str(tmp_path / "data")]
    # no --control-model: the library's Qwen-Image control model (its Union model takes canny)
    code = main(["generate", "--model", str(built("qwen-image")), "--prompt", "a vase", "--steps", "2", "--seed", "9",
                 "--width", "64", "--height", "64", "--control", f"canny:{tmp_path / 'shape.png'}:0.8:0:0.9",
                 "--models-dir", str(tmp_path / "models"), "--out", str(first), *data])
    assert code == 0, capsys.readouterr().err
    with Image.open(first) as png:
        parameters, recipe = png.text["parameters"], json.loads(png.text["easel"])
    stored = recipe["request"]["controls"][0]
    assert (stored["kind"], stored["model"], stored["strength"], stored["end"]) == (
        "canny", f"{NET}.safetensors", 0.8, 0.9)
    assert stored["image_png"] and len(stored["model_hash"]) == 10
    assert f'ControlNet 0: "Module: canny, Model: {NET} [{stored["model_hash"]}], Weight: 0.8' in parameters
    code = main(["regenerate", str(first), "--model", str(built("qwen-image")), "--models-dir", str(tmp_path / "models"),
                 "--out", str(again), *data])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))

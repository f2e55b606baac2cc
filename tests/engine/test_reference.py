"""Reference images (IP-Adapter) on SD 1.5 and SDXL, as a user meets them: a reference changes the
image, weight 0 changes nothing (bit for bit), the next job without a reference is exactly the image
of a model that never had one, the reference is in the metadata and regenerates the same pixels, a
missing image encoder and a family without IP-Adapters are one plain line each, and IP-Adapter and
image-encoder files are recognised in ComfyUI's folders (not taken for checkpoints).

The tiny IP-Adapters are the ``ip-adapter-sd15`` / ``ip-adapter-sdxl`` test models: h94's file layout,
sized for the tiny test UNet's cross-attention, with a tiny CLIP vision encoder in ``image_encoder/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import families
from engine.api import GenerationRequest, InvalidRequest, ModelInfo, ReferenceInput
from engine.cli import main
from engine.files.probe import inspect_model


def picture(colour=(200, 40, 40)) -> Image.Image:
    im = Image.new("RGB", (64, 64), (240, 240, 230))
    ImageDraw.Draw(im).ellipse((12, 12, 52, 52), fill=colour)
    return im


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(np.int16)


def make(engine, model: Path, *references, **fields):
    base = dict(prompt="a bowl of fruit", model=str(model), seed=5, steps=3, width=64, height=64)
    base.update(fields)
    return engine.generate(GenerationRequest(**base, references=tuple(references)))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_reference_steers_weight_zero_changes_nothing_and_the_next_plain_job_is_as_before(engine, built, family):
    model, adapter = built(family), str(built(f"ip-adapter-{family}"))
    plain = pixels(make(engine, model))
    steered = make(engine, model, ReferenceInput(picture(), 1.0, model=adapter))
    assert np.abs(pixels(steered) - plain).mean() > 2  # the reference shows
    other = make(engine, model, ReferenceInput(picture((40, 40, 200)), 1.0, model=adapter))
    assert np.abs(pixels(other) - pixels(steered)).mean() > 0.5  # another picture, another image
    assert np.array_equal(pixels(make(engine, model)), plain)  # taken out again: bit for bit
    assert np.array_equal(pixels(make(engine, model, ReferenceInput(picture(), 0.0, model=adapter))), plain)
    half = make(engine, model, ReferenceInput(picture(), 0.5, model=adapter))
    assert 0 < np.abs(pixels(half) - plain).mean() < np.abs(pixels(steered) - plain).mean() * 1.5
    recorded = steered.request.references[0]
    assert recorded.model == adapter and len(recorded.model_hash) == 10 and recorded.encoder.endswith("image_encoder")
    assert dict(steered.params)["ControlNet 0"].startswith(f"Module: ip-adapter_clip, Model: ip-adapter_{family}_test [")


def test_two_references_with_their_own_weights(engine, built):
    model, adapter = built("sd15"), str(built("ip-adapter-sd15"))
    one = pixels(make(engine, model, ReferenceInput(picture(), 1.0, model=adapter)))
    two = make(engine, model, ReferenceInput(picture(), 1.0, model=adapter),
               ReferenceInput(picture((30, 160, 30)), 0.7, model=adapter))
    assert np.abs(pixels(two) - one).mean() > 0.5
    assert [p for p in two.params if p[0].startswith("ControlNet")][1][1].count("Weight: 0.7") == 1


def test_a_missing_image_encoder_is_one_line_naming_clip_vision(engine, built, tmp_path):
    lone = tmp_path / "ip-adapter_lone.safetensors"
    shutil.copy(built("ip-adapter-sd15"), lone)
    with pytest.raises(InvalidRequest) as caught:
        make(engine, built("sd15"), ReferenceInput(picture(), 1.0, model=str(lone)))
    line = str(caught.value)
    assert "\n" not in line and "needs a CLIP vision image encoder" in line and "models/clip_vision" in line
    assert make(engine, built("sd15")).images  # still ready


def test_a_wrong_family_ip_adapter_is_refused_in_one_line(engine, built):
    with pytest.raises(InvalidRequest) as caught:
        make(engine, built("sd15"), ReferenceInput(picture(), 1.0, model=str(built("ip-adapter-sdxl"))))
    line = str(caught.value)
    assert "\n" not in line and "choose an IP-Adapter made for it" in line


def test_no_ip_adapter_in_the_library_says_where_to_put_one(engine, built):
    with pytest.raises(InvalidRequest) as caught:
        make(engine, built("sd15"), ReferenceInput(picture(), 1.0))
    assert "models/ipadapter" in str(caught.value) and "\n" not in str(caught.value)


def test_a_family_without_reference_images_refuses_them_in_one_line(tmp_path):
    from engine.engine import Engine

    caps = families.capabilities(ModelInfo("/x.safetensors", "x", "checkpoint", "sd2", "safetensors"))
    with pytest.raises(InvalidRequest, match="takes no reference images"):
        caps.check_request(GenerationRequest(prompt="a cat", references=(ReferenceInput(picture()),)))
    _family, model = families.test_models()["amused"]
    path = model.write(tmp_path / "amused", model.layouts[0], 0)
    with pytest.raises(InvalidRequest) as caught:
        Engine(device="cpu").generate(GenerationRequest(prompt="a cat", model=str(path), steps=2, width=64, height=64,
                                                        references=(ReferenceInput(picture()),)))
    assert "takes no reference images" in str(caught.value) and "\n" not in str(caught.value)


def test_request_fields_are_checked_in_one_line():
    with pytest.raises(InvalidRequest, match="weight must be from 0 to 2"):
        ReferenceInput(picture(), 2.5)
    with pytest.raises(InvalidRequest, match="has no image"):
        ReferenceInput(None)
    with pytest.raises(InvalidRequest, match="at most 4 reference images"):
        GenerationRequest(prompt="x", references=[ReferenceInput(picture())] * 5)
    again = ReferenceInput.from_dict(ReferenceInput(picture(), 0.6, model="a").to_dict())
    assert again.weight == 0.6 and np.array_equal(np.asarray(again.image), np.asarray(picture()))


def test_comfyui_folders_ip_adapter_and_clip_vision_file_are_found_and_steer(engine, built, tmp_path):
    """ComfyUI's layout: models/ipadapter/<adapter>, models/clip_vision/<encoder>.safetensors (one file in
    transformers' names); the library's adapter is taken when none is named."""
    from engine.models import ModelLibrary
    from engine.testaddons import make_image_encoder

    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "ipadapter").mkdir(parents=True)
    shutil.copy(built("ip-adapter-sd15"), comfy / "ipadapter" / "ip-adapter_sd15.safetensors")
    make_image_encoder(comfy / "clip_vision" / "clip_vision_tiny.safetensors", single_file=True)
    adapter, encoder = inspect_model(str(comfy / "ipadapter" / "ip-adapter_sd15.safetensors")), \
        inspect_model(str(comfy / "clip_vision" / "clip_vision_tiny.safetensors"))
    assert (adapter.kind, adapter.usable, encoder.kind, encoder.usable) == ("ipadapter", False, "clipvision", False)
    assert "IP-Adapter" in adapter.problem and "\n" not in adapter.problem
    library = ModelLibrary([str(tmp_path / "ComfyUI")], include_defaults=False, state_dir=tmp_path / "state")
    library.scan()
    assert [e.kind for e in library.of_kind("ipadapter", "clipvision")] == ["ipadapter", "clipvision"]
    assert all(e.usable for e in library.of_kind("ipadapter", "clipvision"))

    from engine.engine import Engine

    eng = Engine(device="cpu", library=library)
    model = built("sd15")
    plain = pixels(make(eng, model))
    steered = make(eng, model, ReferenceInput(picture(), 1.0))
    assert np.abs(pixels(steered) - plain).mean() > 2
    assert steered.request.references[0].encoder.endswith("clip_vision_tiny.safetensors")
    # the single file reads as the same encoder as its folder: the same pixels as the h94 layout
    folder = make(engine, model, ReferenceInput(picture(), 1.0, model=str(built("ip-adapter-sd15"))))
    assert np.array_equal(pixels(steered), pixels(folder))


def test_cli_reference_metadata_and_regenerate_bit_identical(built, tmp_path, capsys):
    models = tmp_path / "models" / "ipadapter"
    shutil.copytree(built("ip-adapter-sd15").parent, models)
    picture().save(tmp_path / "ref.png")
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    data = ["--data-dir", str(tmp_path / "data")]
    code = main(["generate", "--model", str(built("sd15")), "--prompt", "a vase", "--steps", "3", "--seed", "9",
                 "--width", "64", "--height", "64", "--reference", f"{tmp_path / 'ref.png'}:0.8",
                 "--models-dir", str(tmp_path / "models"), "--out", str(first), *data])
    assert code == 0, capsys.readouterr().err
    with Image.open(first) as png:
        parameters, recipe = png.text["parameters"], json.loads(png.text["easel"])
    stored = recipe["request"]["references"][0]
    assert (stored["model"], stored["weight"], stored["encoder"]) == (
        "ip-adapter_sd15_test.safetensors", 0.8, "image_encoder")  # names, never the user's folders
    assert stored["image_png"] and len(stored["image_hash"]) == 10 and len(stored["model_hash"]) == 10
    assert (f'ControlNet 0: "Module: ip-adapter_clip, Model: ip-adapter_sd15_test [{stored["model_hash"]}], '
            'Weight: 0.8, Guidance Start: 0, Guidance End: 1"') in parameters
    capsys.readouterr()
    assert main(["info", str(first)]) == 0
    shown = capsys.readouterr().out
    assert "reference 0: weight 0.8, IP-Adapter ip-adapter_sd15_test.safetensors" in shown and "image 64x64" in shown
    code = main(["regenerate", str(first), "--model", str(built("sd15")), "--models-dir", str(tmp_path / "models"),
                 "--out", str(again), *data])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    plain = tmp_path / "plain.png"
    assert main(["generate", "--model", str(built("sd15")), "--prompt", "a vase", "--steps", "3", "--seed", "9",
                 "--width", "64", "--height", "64", "--out", str(plain), *data]) == 0
    assert not np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(plain)))


def test_cli_bad_reference_is_one_line(built, tmp_path, capsys):
    picture().save(tmp_path / "ref.png")
    code = main(["generate", "--model", str(built("sd15")), "--prompt", "p", "--steps", "1", "--width", "64",
                 "--height", "64", "--reference", f"{tmp_path / 'ref.png'}:3", "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "weight must be from 0 to 2" in err

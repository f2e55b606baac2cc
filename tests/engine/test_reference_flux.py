"""Reference images on FLUX.1, through FLUX.1 Redux, as a user meets them: a reference changes the image and
another picture changes it differently, weight 0 and a job without references after one with them are
exactly the plain image, the Redux model and its SigLIP encoder are recognised from their headers (as
files in a ComfyUI install or with the encoder as a folder beside the model) and never taken for
checkpoints, a Redux model for another text-encoder width is refused in one line, and the metadata
regenerates the same pixels through the CLI.

The tiny Redux model is the ``redux-flux1`` test model: the real ``ReduxImageEncoder`` with a tiny SigLIP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import families
from engine.api import GenerationRequest, InvalidRequest, ReferenceInput
from engine.cli import main
from engine.files.probe import inspect_model


def picture(colour=(200, 40, 40), other=(20, 200, 30)) -> Image.Image:
    im = Image.new("RGB", (64, 64), colour)
    ImageDraw.Draw(im).ellipse((8, 8, 56, 56), fill=other)
    return im


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(np.int16)


def make(engine, model, *references, **fields):
    base = dict(prompt="a bowl of fruit", model=str(model), seed=5, steps=2, width=64, height=64)
    base.update(fields)
    return engine.generate(GenerationRequest(**base, references=tuple(references)))


@pytest.mark.parametrize("layout", ["single-file", "comfyui"])
def test_a_reference_steers_flux_and_weight_0_or_none_is_the_plain_image(engine, built, layout):
    model, redux = built("flux1-dev"), str(built("redux-flux1", layout))
    plain = pixels(make(engine, model))
    steered = make(engine, model, ReferenceInput(picture(), model=redux))
    other = pixels(make(engine, model, ReferenceInput(picture((10, 10, 200), (250, 250, 0)), model=redux)))
    zero = pixels(make(engine, model, ReferenceInput(picture(), model=redux, weight=0)))
    after = pixels(make(engine, model))
    assert not np.array_equal(pixels(steered), plain)
    assert not np.array_equal(other, pixels(steered))  # the picture itself matters
    assert np.array_equal(zero, plain) and np.array_equal(after, plain)
    recorded = steered.request.references[0]
    assert recorded.model == str(Path(redux).resolve()) and len(recorded.model_hash) == 10 and recorded.encoder
    assert dict(steered.params)["Redux 0"] == f"Module: redux, Model: flux1-redux-test [{recorded.model_hash}], Weight: 1"


def test_two_references_and_their_weights(engine, built):
    model, redux = built("flux1-dev"), str(built("redux-flux1", "single-file"))
    one = pixels(make(engine, model, ReferenceInput(picture(), model=redux)))
    two = make(engine, model, ReferenceInput(picture(), model=redux),
               ReferenceInput(picture((10, 10, 200), (250, 250, 0)), model=redux, weight=0.5))
    assert not np.array_equal(pixels(two), one)
    assert [k for k, _ in two.params if k.startswith("Redux")] == ["Redux 0", "Redux 1"]


def test_redux_and_siglip_are_recognised_and_not_checkpoints(built):
    root = built("redux-flux1", "comfyui").parents[2]
    redux = inspect_model(str(root / "models" / "style_models" / "flux1-redux-test.safetensors"))
    siglip = inspect_model(str(root / "models" / "clip_vision" / "sigclip_vision_test.safetensors"))
    assert (redux.kind, redux.family) == ("redux", "flux1") and "Redux" in redux.problem
    assert (siglip.kind, siglip.variant) == ("clipvision", "siglip")
    assert families.family_for(redux) is None and families.family_for(siglip) is None


def test_a_redux_model_of_another_width_and_a_model_without_references_refuse_in_one_line(engine, built, tmp_path):
    import torch

    from engine.testmodels import save_safetensors

    wide = tmp_path / "flux1-redux-dev.safetensors"  # the real widths: SigLIP 1152 -> T5 4096
    save_safetensors(wide, {"redux_up.weight": torch.zeros(12, 16), "redux_up.bias": torch.zeros(12),
                            "redux_down.weight": torch.zeros(4096, 12), "redux_down.bias": torch.zeros(4096)})
    with pytest.raises(InvalidRequest) as caught:
        make(engine, built("flux1-dev"), ReferenceInput(picture(), model=str(wide)))
    assert "\n" not in str(caught.value) and "4096" in str(caught.value)
    with pytest.raises(InvalidRequest) as caught:  # a model without a Redux in its library
        make(engine, built("flux1-dev"), ReferenceInput(picture()))
    assert "models/style_models" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(InvalidRequest, match="takes no reference images"):
        make(engine, built("zimage-turbo"), ReferenceInput(picture()))
    assert make(engine, built("flux1-dev")).images  # still ready


def test_cli_reference_metadata_and_regenerate_bit_identical(built, tmp_path, capsys):
    install = built("redux-flux1", "comfyui").parents[2]
    picture().save(tmp_path / "fruit.png")
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    data = ["--data-dir", str(tmp_path / "data")]
    code = main(["generate", "--model", str(built("flux1-dev")), "--prompt", "a bowl", "--steps", "2", "--seed", "4",
                 "--width", "64", "--height", "64", "--reference", f"{tmp_path / 'fruit.png'}:0.7",
                 "--models-dir", str(install), "--out", str(first), *data])
    assert code == 0, capsys.readouterr().err
    with Image.open(first) as png:
        parameters, recipe = png.text["parameters"], json.loads(png.text["easel"])
    stored = recipe["request"]["references"][0]
    assert stored["weight"] == 0.7 and len(stored["model_hash"]) == 10 and stored["image_png"]
    assert f'Redux 0: "Module: redux, Model: flux1-redux-test [{stored["model_hash"]}], Weight: 0.7"' in parameters
    code = main(["regenerate", str(first), "--model", str(built("flux1-dev")), "--models-dir", str(install),
                 "--out", str(again), *data])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))

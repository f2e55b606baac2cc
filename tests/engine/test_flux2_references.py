"""FLUX.2 [klein] with several reference images (its further input pictures), through the Engine and
the `easel` CLI with the tiny Klein model: they change a new image, an edit and an inpaint; they are
stored in the saved image, so `easel regenerate` makes the same pixels from the PNG alone; and Klein's
limits (four pictures in all, their shapes) are one plain line each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import families
from engine.api import GenerationRequest, InvalidRequest, Mode, ReferenceInput
from engine.cli import main
from engine.files.probe import check_model
from engine.metadata import read_metadata


@pytest.fixture(scope="module")
def klein(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flux2-refs")
    assert main(["make-test-model", str(root / "klein"), "--family", "flux2-klein"]) == 0
    return root / "klein"


@pytest.fixture(scope="module")
def engine():
    from engine.engine import Engine

    return Engine(device="cpu")


def _pixels(image) -> np.ndarray:
    image = Image.open(image) if isinstance(image, (str, Path)) else image
    return np.asarray(image.convert("RGB")).astype(int)


def _pictures(tmp_path: Path | None = None) -> list:
    rng = np.random.default_rng(4)
    hat = Image.new("RGB", (96, 64), (250, 230, 40))
    ImageDraw.Draw(hat).ellipse((10, 5, 80, 60), fill=(200, 30, 30))
    noise = Image.fromarray(rng.integers(0, 255, (40, 72, 3), dtype=np.uint8))  # under 64 px: enlarged for Klein
    if tmp_path is not None:
        hat.save(tmp_path / "hat.png")
        noise.save(tmp_path / "noise.png")
    return [hat, noise]


def _request(model, **changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="a red fox wearing the hat", model=str(model), steps=3, width=64,
                                       height=64, seed=5), **changes})


def test_klein_declares_the_four_pictures_it_takes(klein):
    assert families.capabilities(check_model(klein)).references == 4


def test_two_references_change_a_new_image_an_edit_and_an_inpaint(klein, engine):
    hat, noise = (ReferenceInput(image=p) for p in _pictures())
    source = Image.new("RGB", (64, 64), (40, 90, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    for extra in ({}, dict(mode=Mode.IMG2IMG, init_image=source),
                  dict(mode=Mode.INPAINT, init_image=source, mask=mask, mask_blur=0)):
        plain = engine.generate(_request(klein, **extra))
        request = _request(klein, references=(hat, noise), **extra)
        steered = engine.generate(request)
        assert not np.array_equal(_pixels(plain.images[0]), _pixels(steered.images[0])), extra.get("mode")
        swapped = engine.generate(request.replace(references=(noise, hat)))  # each picture is its own input
        assert not np.array_equal(_pixels(swapped.images[0]), _pixels(steered.images[0])), extra.get("mode")
        params = dict(steered.params)
        assert params["Reference images"] == "2" and len(params["Reference hashes"].split()) == 2
        if extra.get("mode") is Mode.INPAINT:  # outside the mask the source stays
            keep = np.asarray(mask) == 0
            assert np.array_equal(_pixels(steered.images[0])[keep], _pixels(source)[keep])
    # A weight of 0 leaves a reference out; Klein takes no per-picture weight, and says so.
    off = engine.generate(_request(klein, references=(ReferenceInput(image=hat.image, weight=0),)))
    assert np.array_equal(_pixels(off.images[0]), _pixels(engine.generate(_request(klein)).images[0]))
    half = engine.generate(_request(klein, references=(ReferenceInput(image=hat.image, weight=0.5),)))
    assert any("weights were not applied" in n for n in half.notices)


def test_references_are_stored_and_regenerate_the_same_pixels(klein, tmp_path, capsys):
    _pictures(tmp_path)
    out = tmp_path / "new.png"
    assert main(["generate", "--model", str(klein), "--prompt", "a fox wearing the hat", "--reference",
                 str(tmp_path / "hat.png"), "--reference", str(tmp_path / "noise.png"), "--steps", "3",
                 "--width", "64", "--height", "64", "--seed", "9", "--out", str(out)]) == 0, capsys.readouterr().err
    meta = read_metadata(out)
    assert meta.extra["Reference images"] == "2"
    stored = meta.fields["references"]
    assert [r.image.size for r in stored] == [(96, 64), (72, 40)]  # the pictures themselves, as given
    again = tmp_path / "again.png"
    assert main(["regenerate", str(out), "--model", str(klein), "--out", str(again)]) == 0, capsys.readouterr().err
    assert np.array_equal(_pixels(again), _pixels(out))
    assert main(["generate", "--model", str(klein), "--prompt", "a fox wearing the hat", "--steps", "3",
                 "--width", "64", "--height", "64", "--seed", "9", "--out", str(tmp_path / "plain.png")]) == 0
    assert not np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(out))

    # an edit with a reference: the input image is given again, the reference comes from the PNG
    edit = tmp_path / "edit.png"
    assert main(["img2img", "--model", str(klein), "--init", str(out), "--reference", str(tmp_path / "hat.png"),
                 "--prompt", "put the hat of image 2 on it", "--steps", "3", "--seed", "2", "--out", str(edit)]) == 0
    assert main(["regenerate", str(edit), "--model", str(klein), "--init", str(out), "--out",
                 str(tmp_path / "edit-again.png")]) == 0, capsys.readouterr().err
    assert np.array_equal(_pixels(tmp_path / "edit-again.png"), _pixels(edit))


def test_klein_limits_are_one_plain_line(klein, engine, tmp_path, capsys):
    picture = ReferenceInput(image=Image.new("RGB", (64, 64), (9, 9, 9)))
    source = Image.new("RGB", (64, 64), (40, 90, 200))
    with pytest.raises(InvalidRequest, match="at most 4 pictures at once: the image to edit and up to 3"):
        engine.generate(_request(klein, mode=Mode.IMG2IMG, init_image=source, references=(picture,) * 4))
    assert engine.generate(_request(klein, references=(picture,) * 4)).images  # a new image takes four
    thin = ReferenceInput(image=Image.new("RGB", (600, 40)))
    with pytest.raises(InvalidRequest, match="reference image 1 is 600×40 px: FLUX.2 \\[klein\\] takes pictures at "
                                             "most 8 times as long one way as the other"):
        engine.generate(_request(klein, references=(thin,)))
    Image.new("RGB", (64, 64)).save(tmp_path / "r.png")
    code = main(["generate", "--model", str(klein), "--prompt", "x", "--steps", "1"]
                + ["--reference", str(tmp_path / "r.png")] * 5 + ["--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code != 0 and "at most 4 reference images" in err and "Traceback" not in err


def test_easel_edit_takes_reference_images(klein, tmp_path, capsys):
    _pictures(tmp_path)
    Image.new("RGB", (64, 64), (40, 90, 160)).save(tmp_path / "fox.png")
    edit = ["edit", str(tmp_path / "fox.png"), "put the hat from image 2 on the fox", "--model", str(klein),
            "--steps", "3", "--seed", "9"]
    assert main([*edit, "--out", str(tmp_path / "plain.png")]) == 0, capsys.readouterr().err
    assert main([*edit, "--reference", str(tmp_path / "hat.png"), "--out", str(tmp_path / "hat-edit.png")]) == 0, \
        capsys.readouterr().err
    assert read_metadata(tmp_path / "hat-edit.png").extra["Reference images"] == "1"
    assert not np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(tmp_path / "hat-edit.png"))

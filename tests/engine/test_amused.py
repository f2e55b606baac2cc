"""aMUSEd (VQ tokens + masked transformer) through the same engine API and CLI as SD."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.api import Cancelled, GenerationRequest, ModelError, Mode
from engine.cli import main
from engine.files.probe import check_model


@pytest.fixture(scope="module")
def amused(tmp_path_factory) -> Path:
    from engine.families.amused.testmodel import make_amused_test_model

    return make_amused_test_model(tmp_path_factory.mktemp("amused") / "amused-tiny")


def test_folder_is_a_usable_amused_model_and_partial_folders_say_what_is_missing(tmp_path, amused):
    info = check_model(amused)
    assert (info.family, info.kind, info.usable) == ("amused", "checkpoint", True)
    partial = tmp_path / "partial"
    shutil.copytree(amused, partial)
    shutil.rmtree(partial / "vqvae")
    with pytest.raises(ModelError, match="incomplete aMUSEd folder: missing vqvae/"):
        check_model(partial)


def test_generate_writes_metadata_and_regenerates_identically(tmp_path, capsys, amused):
    first = tmp_path / "a.png"
    assert main(["generate", "--model", str(amused), "--prompt", "a lantern", "--steps", "3", "--seed", "9",
                 "--cfg", "4", "--width", "64", "--height", "64", "--out", str(first)]) == 0, capsys.readouterr().err
    from engine.metadata import read_metadata

    meta = read_metadata(first)
    assert (meta.fields["prompt"], meta.fields["seed"], meta.fields["steps"]) == ("a lantern", 9, 3)
    again = tmp_path / "b.png"
    assert main(["regenerate", str(first), "--model", str(amused), "--out", str(again)]) == 0
    a, b = np.asarray(Image.open(first)), np.asarray(Image.open(again))
    assert np.array_equal(a, b) and a.std() > 1


def test_inpaint_changes_only_the_masked_region(shared_engine, amused):
    source = Image.new("RGB", (64, 64), (30, 140, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    request = GenerationRequest(prompt="a sun", model=str(amused), mode=Mode.INPAINT, seed=4, steps=3,
                                guidance_scale=3, width=64, height=64, init_image=source, mask=mask,
                                strength=1.0, mask_blur=0)
    out = np.asarray(shared_engine.generate(request).images[0]).astype(int)
    src = np.asarray(source).astype(int)
    assert np.array_equal(out[:8], src[:8])  # outside the mask: untouched
    assert np.abs(out[24:40, 24:40] - src[24:40, 24:40]).mean() > 5  # inside: repainted


def test_the_load_time_is_reported_by_the_job_that_loaded_the_model(amused, tmp_path):
    from engine.engine import Engine

    engine = Engine(device="cpu")
    request = GenerationRequest(prompt="a red apple", model=str(amused), steps=2, seed=3, width=64, height=64)
    first = engine.generate(request)
    second = engine.generate(request)
    assert first.timings.load > 0  # the status bar's "loaded in" and the log come from here
    assert second.timings.load == 0.0


def test_img2img_on_an_odd_sized_canvas_comes_back_at_the_canvas_size(shared_engine, amused):
    # The window asks for the canvas's padded size (336x256 for 333x251): the result is cropped back,
    # as for SD, so the canvas takes it instead of "the canvas changed size while this was generating".
    canvas = Image.new("RGB", (333, 251), (90, 140, 200))
    request = GenerationRequest(prompt="a lake", model=str(amused), mode=Mode.IMG2IMG, init_image=canvas,
                                width=336, height=256, steps=2, seed=3, strength=0.6)
    result = shared_engine.generate(request)
    assert result.images[0].size == (333, 251)

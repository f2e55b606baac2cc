"""Stable unCLIP (DALL·E 2-style image variations) through the same engine API and CLI as SD."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import Cancelled, GenerationRequest, InvalidRequest, ModelError, Mode, UnsafeModelFile, UnsupportedModel
from engine.cli import main
from engine.families.unclip import TXT2IMG_REFUSED
from engine.metadata import read_metadata
from engine.files.probe import check_model, inspect_model
from engine.variations import STRENGTHS, variation_request


@pytest.fixture(scope="module")
def unclip(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("unclip") / "unclip-tiny"
    assert main(["make-test-model", str(dest), "--family", "unclip"]) == 0  # the CLI builder, as users run it
    return dest


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A 70x60 photo-like source (not on the 8 px grid): smooth colour fields plus texture."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:60, 0:70]
    pixels = np.stack([x * 3.5, y * 4.0, 255 - x * 2.0], axis=-1) + rng.normal(0, 12, (60, 70, 3))
    path = tmp_path_factory.mktemp("src") / "source.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(path)
    return path


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def _copy(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(model, target)
    return target


def test_folder_is_an_unclip_model_and_broken_or_other_folders_say_why(tmp_path, unclip):
    info = check_model(unclip)
    assert (info.kind, info.family, info.variant, info.prediction_type, info.usable) == (
        "checkpoint", "unclip", "unclip", "v_prediction", True)

    partial = _copy(unclip, tmp_path)
    shutil.rmtree(partial / "image_encoder")
    (partial / "image_noising_scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(ModelError, match="incomplete Stable unCLIP folder: missing image_encoder/, "
                                         "image_noising_scheduler/scheduler_config.json"):
        check_model(partial)

    prior = tmp_path / "prior"
    shutil.copytree(unclip, prior)
    index = json.loads((prior / "model_index.json").read_text())
    index["_class_name"] = "StableUnCLIPPipeline"
    (prior / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnsupportedModel, match="needs the Karlo prior model") as caught:
        check_model(prior)
    assert "\n" not in str(caught.value)
    assert inspect_model(prior).problem.startswith("Stable unCLIP text-to-image")  # the model library's line

    pickled = tmp_path / "pickled"
    shutil.copytree(unclip, pickled)
    (pickled / "image_encoder" / "model.safetensors").rename(pickled / "image_encoder" / "pytorch_model.bin")
    with pytest.raises(UnsafeModelFile):
        check_model(pickled)


def test_variations_have_the_source_size_differ_per_seed_and_follow_the_source(shared_engine, unclip, source):
    info = check_model(unclip)
    image = Image.open(source)
    request = variation_request(image, str(unclip), info, None, count=2, strength=STRENGTHS["subtle"], seed=40,
                                steps=3)
    assert (request.mode, request.width, request.height, request.steps) == (Mode.IMG2IMG, 72, 64, 3)
    events = []
    result = shared_engine.generate(request, on_progress=events.append)
    assert [im.size for im in result.images] == [(70, 60), (70, 60)]  # cropped back from the 8 px grid
    assert result.seeds == (40, 41) and result.model.family == "unclip"
    a, b = (_pixels(im) for im in result.images)
    assert np.abs(a - b).mean() > 1 and a.std() > 1  # two different variations, neither blank
    assert [(e.step, e.total, e.image_index) for e in events] == [(s, 3, i) for i in (0, 1) for s in (1, 2, 3)]
    assert all((e.preview is not None) == (e.step in (2, 3)) for e in events)
    assert dict(result.params)["Noise level"] == "350"

    # Strong noises the image embedding more: same seed, another image; and the recorded level says so.
    strong = shared_engine.generate(request.replace(strength=STRENGTHS["strong"], batch_count=1))
    assert dict(strong.params)["Noise level"] == "700"
    assert np.abs(_pixels(strong.images[0]) - a).mean() > 1
    # The source drives the result: another source, same seed and settings, another image.
    other = shared_engine.generate(request.replace(init_image=Image.new("RGB", (70, 60), (240, 20, 20)),
                                                   batch_count=1))
    assert np.abs(_pixels(other.images[0]) - a).mean() > 1


def test_text_to_image_is_refused_with_one_plain_line(shared_engine, unclip, capsys):
    request = GenerationRequest(prompt="a fox", model=str(unclip), width=64, height=64, steps=2, seed=1)
    with pytest.raises(InvalidRequest) as caught:
        shared_engine.generate(request)
    assert str(caught.value) == TXT2IMG_REFUSED
    capsys.readouterr()
    assert main(["generate", "--model", str(unclip), "--prompt", "a fox", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("easel: Stable unCLIP makes variations of an image") and "\n" not in err
    # Any other model still needs a prompt: one line, not a traceback.
    assert main(["generate", "--model", str(unclip) + "-missing", "--steps", "2"]) == 2
    assert capsys.readouterr().err.strip().startswith("easel: --prompt")


def test_cli_variations_write_pngs_that_regenerate_identically(tmp_path, capsys, unclip, source):
    out = tmp_path / "vars"
    code = main(["variations", str(source), "--model", str(unclip), "--count", "2", "--strength", "strong",
                 "--steps", "2", "--seed", "7", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    files = sorted(out.glob("*.png"))
    assert len(files) == 2 and all(Image.open(f).size == (70, 60) for f in files)
    meta = read_metadata(files[0])
    assert (meta.fields["mode"], meta.fields["strength"], meta.fields["prompt"], meta.fields["seed"]) == (
        "img2img", 0.7, "", 7)
    assert meta.extra["Noise level"] == "700" and len(meta.extra["Init image hash"]) == 32
    assert "Noise level: 700" in meta.raw["parameters"]  # the A1111 line other tools show

    again = tmp_path / "again.png"
    capsys.readouterr()
    assert main(["regenerate", str(files[0]), "--model", str(unclip), "--init", str(source), "--out", str(again)]) == 0
    assert "not the image" not in capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(files[0])), np.asarray(Image.open(again)))

    wrong = tmp_path / "wrong.png"
    Image.new("RGB", (70, 60), (5, 5, 5)).save(wrong)
    assert main(["regenerate", str(files[0]), "--model", str(unclip), "--init", str(wrong),
                 "--out", str(tmp_path / "w.png")]) == 0
    assert "is not the image" in capsys.readouterr().err  # says why the pixels will not match


def test_cli_generate_with_init_needs_no_prompt(tmp_path, capsys, unclip, source):
    target = tmp_path / "g.png"
    code = main(["generate", "--model", str(unclip), "--init", str(source), "--steps", "2", "--seed", "3",
                 "--out", str(target)])
    assert code == 0, capsys.readouterr().err
    meta = read_metadata(target)
    assert (meta.fields["mode"], meta.fields["strength"], meta.fields["prompt"]) == ("img2img", 0.35, "")
    assert Image.open(target).size == (70, 60)


def test_large_sources_are_varied_at_the_models_own_area():
    from engine.api import ModelInfo

    info = ModelInfo("/m", "unclip", "checkpoint", "unclip", "diffusers", variant="unclip")
    request = variation_request(Image.new("RGB", (3000, 1500)), "/m", info, None, count=1, strength=0.35, seed=1)
    assert request.width * request.height <= 768 * 768 * 1.05
    assert abs(request.width / request.height - 2.0) < 0.05 and request.width % 8 == request.height % 8 == 0
    sd = ModelInfo("/s", "sd", "checkpoint", "sd1", "safetensors")
    assert variation_request(Image.new("RGB", (1000, 500)), "/s", sd, None, seed=1).width == 1000  # SD: unchanged

"""Variations of any image on any checkpoint, and one-step (Turbo) models with their own defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import InvalidRequest
from engine.cli import main
from engine.families import defaults as family_defaults
from engine.files.probe import check_model
from engine.variations import parse_strength


def info_json(capsys, path: Path) -> dict:
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_strength_words_and_numbers():
    assert parse_strength("subtle") == 0.35 and parse_strength("Strong") == 0.7 and parse_strength("0.5") == 0.5
    for bad in ("wild", "0", "1.5"):
        with pytest.raises(InvalidRequest, match="strength"):
            parse_strength(bad)


def test_variations_follow_the_stored_recipe_with_new_seeds(tmp_path, capsys, tiny_models):
    model = str(tiny_models.get())
    src = tmp_path / "src.png"
    assert main(["generate", "--model", model, "--prompt", "a red barn", "--negative", "fog", "--steps", "4",
                 "--seed", "11", "--cfg", "5", "--width", "64", "--height", "64", "--out", str(src)]) == 0
    out = tmp_path / "vars"
    code = main(["variations", str(src), "--model", model, "--count", "2", "--strength", "strong", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    files = sorted(out.glob("*.png"))
    assert len(files) == 2
    recipes = [info_json(capsys, f)["request"] for f in files]
    for r in recipes:
        assert (r["prompt"], r["negative_prompt"], r["guidance_scale"], r["mode"], r["strength"]) == (
            "a red barn", "fog", 5.0, "img2img", 0.7)
        assert r["seed"] != 11 and (r["width"], r["height"]) == (64, 64)
    assert recipes[0]["seed"] != recipes[1]["seed"]
    a, b, s = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (*files, src))
    assert np.abs(a - b).mean() > 0.5  # two different variations
    assert np.abs(a - s).mean() > 0.5  # not the source returned

    # A variation regenerates exactly from its own metadata plus the source image.
    again = tmp_path / "again.png"
    assert main(["regenerate", str(files[0]), "--model", model, "--init", str(src), "--out", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(files[0])), np.asarray(Image.open(again)))


def test_variations_of_a_plain_photo_need_no_metadata(tmp_path, capsys, tiny_models):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (70, 60), (200, 120, 40)).save(photo)
    code = main(["variations", str(photo), "--model", str(tiny_models.get()), "--count", "1",
                 "--strength", "0.5", "--steps", "2", "--out", str(tmp_path / "v.png")])
    assert code == 0, capsys.readouterr().err
    r = info_json(capsys, tmp_path / "v.png")["request"]
    assert (r["prompt"], r["strength"], r["width"], r["height"]) == ("", 0.5, 72, 64)


def _turbo_copy(tiny_models, tmp_path: Path, family: str, name: str) -> Path:
    target = tmp_path / name
    shutil.copyfile(tiny_models.get(family, single_file=True), target)
    return target


def test_turbo_files_are_detected_by_name_and_by_modelspec(tmp_path, tiny_models):
    by_name = check_model(_turbo_copy(tiny_models, tmp_path, "sdxl", "sdxl_turbo_1.0_fp16.safetensors"))
    assert (by_name.family, by_name.variant) == ("sdxl", "turbo")
    from safetensors.torch import load_file

    from engine.testmodels import save_safetensors

    spec = tmp_path / "anything.safetensors"
    save_safetensors(spec, load_file(tiny_models.get("sd2-v", single_file=True)), {"modelspec.title": "SD-Turbo"})
    info = check_model(spec)
    assert (info.family, info.variant, info.prediction_type) == ("sd2", "turbo", "epsilon")
    assert family_defaults(info) == {"width": 512, "height": 512, "steps": 1, "guidance_scale": 0.0, "sampler": "Euler a"}
    plain = check_model(tiny_models.get("sd2-v", single_file=True))
    assert plain.variant == "" and family_defaults(plain)["steps"] == 25


def test_turbo_folder_is_detected_by_its_name(tmp_path, tiny_models):
    folder = tmp_path / "sd-turbo"
    shutil.copytree(tiny_models.get(), folder)
    assert check_model(folder).variant == "turbo"


def test_a_turbo_model_runs_one_step_without_cfg_by_default(tmp_path, capsys, tiny_models, shared_engine):
    model = _turbo_copy(tiny_models, tmp_path, "sd15", "tiny-turbo.safetensors")
    out = tmp_path / "t.png"
    code = main(["generate", "--model", str(model), "--prompt", "a fox", "--seed", "3", "--width", "64",
                 "--height", "64", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    r = info_json(capsys, out)["request"]
    assert (r["steps"], r["guidance_scale"]) == (1, 0.0)

    from engine.api import GenerationRequest

    events = []
    request = GenerationRequest(prompt="a fox", model=str(model), seed=3, steps=1, guidance_scale=0.0,
                                width=64, height=64)
    result = shared_engine.generate(request, on_progress=events.append)
    assert [e.step for e in events] == [1]
    # The one step starts from the last training timestep ("trailing"), i.e. from pure noise.
    from engine.samplers import make_scheduler

    scheduler = make_scheduler("Euler a", shared_engine.runner.scheduler_config, 0)
    scheduler.set_timesteps(1)
    assert int(scheduler.timesteps[0]) == 999
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(Image.open(out).convert("RGB")))

    # Variations on a one-step model still denoise at least one step.
    var = tmp_path / "var.png"
    assert main(["variations", str(out), "--model", str(model), "--count", "1", "--out", str(var)]) == 0
    r = info_json(capsys, var)["request"]
    assert r["steps"] * r["strength"] >= 1 and r["guidance_scale"] == 0.0

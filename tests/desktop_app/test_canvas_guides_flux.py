"""Issue 16's whole path with FLUX.1 in the window, on the real engine thread with the tiny models: a
picture on the canvas, a canny control layer made from it, a reference layer (FLUX.1 Redux) and two
region layers all steer one generation; every input is in the saved image, and `easel regenerate`
makes the same pixels from the PNG and the picture it started from (with the model folders to find the
control and Redux models)."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image, ImageDraw
from PySide6.QtGui import QColor

from engine import families
from engine.cli import main


def _paint(doc, layer, rect, colour) -> None:
    doc.set_active(layer.key)
    doc.brush.set_colour(QColor(*colour))
    doc.fill_rect(rect)


def test_flux_follows_a_control_a_reference_and_two_regions_and_regenerates(make_studio, data_dir, qtbot,
                                                                           tmp_path, capsys):
    lib = tmp_path / "models"
    tests = families.test_models()
    model = tests["flux1-dev"][1].write(lib / "flux1-dev", "diffusers", 0)
    canny = tests["controlnet-flux1-canny"][1].write(tmp_path / "built" / "canny", "single-file", 0)
    (lib / "controlnet").mkdir()
    shutil.copy(canny, lib / "controlnet" / "flux1-canny.safetensors")
    tests["redux-flux1"][1].write(lib, "comfyui", 0)  # models/style_models + models/clip_vision

    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(lib))
    qtbot.waitUntil(lambda: any(m.path == str(model) and m.usable for m in studio.catalog.models), timeout=30_000)
    doc, p, w = studio.actions.document, studio.params, studio.window
    p.model, p.prompt, p.steps, p.seed_mode, p.seed = str(model), "a still life", 2, "fixed", 11
    p.width, p.height = 64, 64

    still = Image.new("RGB", (64, 64), (230, 226, 214))
    ImageDraw.Draw(still).rectangle((8, 12, 30, 52), fill=(40, 60, 90))
    ImageDraw.Draw(still).ellipse((34, 14, 60, 48), fill=(180, 70, 50))
    still.save(tmp_path / "still.png")
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(tmp_path / "still.png")
    p.edit_mode, p.strength = "img2img", 0.9

    def generate() -> tuple[np.ndarray, dict, str, str]:
        with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000):
            assert studio.actions.generate() is not None
        path = doc.current_candidate().path
        with Image.open(path) as png:
            recipe = json.loads(png.text["easel"])["request"]
            return np.asarray(png.convert("RGB")).astype(int), recipe, png.text["parameters"], str(path)

    plain, recipe, _, _ = generate()
    assert not any(recipe.get(k) for k in ("controls", "references", "regions"))
    studio.actions.canvas.discard()

    lp = w.canvas_panel.layers_panel
    next(a for a in lp.picture_menu.actions() if a.text() == "Canny edges").trigger()
    control = doc.active_layer
    qtbot.waitUntil(lambda: control.array[..., 3].any(), timeout=20_000)
    reference = doc.add_layer("reference")
    _paint(doc, reference, (0, 0, 64, 64), (30, 160, 60))
    left, right = doc.add_layer("region", prompt="a red apple"), doc.add_layer("region", prompt="a blue jug")
    _paint(doc, left, (0, 0, 32, 64), (230, 40, 40))
    _paint(doc, right, (32, 0, 64, 64), (40, 80, 230))

    steered, recipe, parameters, path = generate()
    assert np.abs(steered - plain).mean() > 0.5  # the guides show in the result
    assert [c["kind"] for c in recipe["controls"]] == ["canny"]
    assert len(recipe["references"]) == 1 and recipe["references"][0]["image_png"]
    assert [r["prompt"] for r in recipe["regions"]] == ["a red apple", "a blue jug"]
    assert "ControlNet 0:" in parameters and "Redux" in parameters and "Region 2:" in parameters

    again = tmp_path / "again.png"
    code = main(["regenerate", path, "--model", str(model), "--init", str(tmp_path / "still.png"), "--models-dir", str(lib),
                 "--out", str(again),
                 "--data-dir", str(tmp_path / "cli-data")])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(again).convert("RGB")).astype(int), steered)

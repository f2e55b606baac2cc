"""Region layers on the canvas, through the window on the real engine thread with the tiny SD 1.5 model:
two painted region layers with their prompts go into the request (each layer's painted alpha its area,
bottom first), change the result and are recorded in the saved image; a region layer without a prompt
or hidden is left out; one with a prompt but nothing painted is one plain line; a model that takes no
regions (aMUSEd) runs without them, with one notice, and the layers stay on the canvas."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image
from PySide6.QtGui import QColor

from engine import families
from tests.desktop_app.conftest import screenshot


def _paint(doc, layer, rect, colour) -> None:
    doc.set_active(layer.key)
    doc.brush.set_colour(QColor(*colour))
    doc.fill_rect(rect)


def test_two_region_layers_steer_generation_through_the_window(make_studio, data_dir, qtbot, tmp_path):
    models = tmp_path / "models"
    _f, sd15 = families.test_models()["sd15"]
    model = sd15.write(models / "sd15", "diffusers", 0)
    _f, amused = families.test_models()["amused"]
    other = amused.write(models / "amused", "diffusers", 0)

    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(models))
    qtbot.waitUntil(lambda: all(any(m.path == str(p) and m.usable for m in studio.catalog.models)
                                for p in (model, other)), timeout=30_000)
    doc, p, w = studio.actions.document, studio.params, studio.window
    p.model, p.prompt, p.steps, p.sampler, p.seed_mode, p.seed = str(model), "a quiet landscape", 2, "Euler", "fixed", 7
    p.width, p.height = 64, 64

    Image.new("RGB", (64, 64), (90, 120, 160)).save(tmp_path / "canvas.png")
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(tmp_path / "canvas.png")
    p.edit_mode, p.strength = "img2img", 0.9

    def generate() -> tuple[np.ndarray, dict, str]:
        with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
            assert studio.actions.generate() is not None
        path = doc.current_candidate().path
        with Image.open(path) as png:
            return (np.asarray(png.convert("RGB")).astype(int), json.loads(png.text["easel"])["request"],
                    png.text["parameters"])

    plain, recipe, _ = generate()
    assert "regions" not in recipe
    studio.actions.canvas.discard()

    panel = w.canvas_panel.layers_panel
    left = doc.add_layer("region")
    _paint(doc, left, (0, 0, 32, 64), (230, 40, 40))
    right = doc.add_layer("region")
    _paint(doc, right, (32, 0, 64, 64), (40, 80, 230))
    unnamed = doc.add_layer("region")  # no prompt: left out, nothing said
    _paint(doc, unnamed, (10, 10, 20, 20), (40, 200, 40))
    doc.set_active(left.key)
    panel.prompt_edit.setText("a red ball")  # typed into the layers panel
    panel.prompt_edit.editingFinished.emit()
    assert doc.layer(left.key).props["prompt"] == "a red ball"
    doc.set_layer_props(right.key, prompt="a blue cube")
    doc.set_active(right.key)
    assert panel.region_box.isVisibleTo(panel) and panel.prompt_edit.text() == "a blue cube"
    shot = screenshot(w, "region_layers.png")
    assert shot.is_file()
    assert doc.image_pil().getpixel((10, 32)) == (90, 120, 160)  # a region is no part of the picture

    regions = studio.actions.canvas.regions()
    assert [r.prompt for r in regions] == ["a red ball", "a blue cube"]  # bottom first, the unprompted left out
    steered, recipe, parameters = generate()
    assert np.abs(steered - plain).mean() > 1  # the regions show
    stored = recipe["regions"]
    assert [r["prompt"] for r in stored] == ["a red ball", "a blue cube"]
    for region, layer in zip(stored, (left, right)):
        with Image.open(io.BytesIO(base64.b64decode(region["mask_png"]))) as mask:
            assert np.array_equal(np.asarray(mask.convert("L")), np.asarray(doc.layer(layer.key).alpha_pil()))
    assert "Region 1: a red ball (50% of the image)" in parameters
    studio.actions.canvas.discard()

    doc.set_layer_visible(right.key, False)  # hidden: not a region any more
    assert [r.prompt for r in studio.actions.canvas.regions()] == ["a red ball"]
    doc.set_layer_visible(right.key, True)

    notices: list[str] = []
    studio.reporter.notice_posted.connect(notices.append)
    p.model = str(other)  # a model that takes no regions: it runs without them, with one line
    p.steps, p.width, p.height = 2, 64, 64
    _, recipe, _ = generate()
    assert "regions" not in recipe
    said = [n for n in notices if "region" in n]
    assert len(said) == 1 and "\n" not in said[0] and "takes no regions" in said[0] and "2 region layers" in said[0]
    assert [layer.key for layer in doc.layers if layer.kind == "region"] == [left.key, right.key, unnamed.key]
    studio.actions.canvas.discard()

    p.model = str(model)
    empty = doc.add_layer("region", prompt="a tree")  # a prompt, nothing painted
    reports: list[str] = []
    studio.reporter.report = reports.append  # what the banner would say
    assert studio.actions.generate() is None
    assert reports and "\n" not in reports[-1] and "is empty" in reports[-1] and empty.name in reports[-1]

"""A reference layer on the canvas, through the window on the real engine thread with the tiny SD 1.5
model and the tiny IP-Adapter (with its image encoder) in the model folder: the layer's picture
steers the result, its weight is recorded in the saved image, hiding the layer gives the plain image
back, and an empty reference layer is one plain line."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, ImageDraw

from engine import families
from tests.desktop_app.conftest import screenshot


def test_a_reference_layer_steers_generation_through_the_window(make_studio, data_dir, qtbot, tmp_path):
    models = tmp_path / "models"
    _f, sd15 = families.test_models()["sd15"]
    model = sd15.write(models / "sd15", "diffusers", 0)
    _f, adapter = families.test_models()["ip-adapter-sd15"]
    adapter.write(models / "ipadapter", "single-file", 0)

    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(models))
    qtbot.waitUntil(lambda: any(m.path == str(model) and m.usable for m in studio.catalog.models), timeout=30_000)
    doc, p, w = studio.actions.document, studio.params, studio.window
    p.model, p.prompt, p.steps, p.sampler, p.seed_mode, p.seed = str(model), "a still life", 2, "Euler", "fixed", 7
    p.width, p.height = 64, 64

    Image.new("RGB", (64, 64), (90, 120, 160)).save(tmp_path / "canvas.png")
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(tmp_path / "canvas.png")
    p.edit_mode, p.strength = "img2img", 0.8

    def generate() -> tuple[np.ndarray, dict]:
        with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
            studio.actions.generate()
        path = doc.current_candidate().path
        with Image.open(path) as png:
            return np.asarray(png.convert("RGB")).astype(int), json.loads(png.text["easel"])["request"]

    plain, recipe = generate()
    assert "references" not in recipe

    picture = Image.new("RGB", (80, 60), (250, 230, 40))
    ImageDraw.Draw(picture).ellipse((10, 5, 70, 55), fill=(200, 30, 30))
    picture.save(tmp_path / "sunflower.png")
    panel = w.canvas_panel.layers_panel
    assert panel.add_reference(str(tmp_path / "sunflower.png"))
    layer = doc.active_layer
    assert layer.kind == "reference" and layer.props["weight"] == 1.0 and layer.name == "Reference: sunflower"
    assert panel.reference_box.isVisibleTo(panel) and not panel.control_box.isVisibleTo(panel)
    panel.weight_spin.setValue(0.9)
    assert doc.active_layer.props["weight"] == 0.9
    screenshot(w, "reference_layer.png")
    assert doc.image_pil().getpixel((32, 32)) == (90, 120, 160)  # a reference is no part of the picture

    steered, recipe = generate()
    assert np.abs(steered - plain).mean() > 1  # the reference shows
    stored = recipe["references"][0]
    assert stored["weight"] == 0.9 and stored["model"] == "ip-adapter_sd15_test.safetensors"
    assert Image.open(tmp_path / "sunflower.png").size == (80, 60)

    doc.set_layer_visible(layer.key, False)  # hidden: it steers nothing, and the adapter is taken out
    again, recipe = generate()
    assert np.array_equal(again, plain) and "references" not in recipe

    empty = doc.add_layer("reference")
    notices = []
    studio.reporter.report = notices.append  # what the banner would say
    studio.actions.generate()
    assert notices and "\n" not in notices[-1] and "is empty" in notices[-1] and empty.name in notices[-1]

"""Reference layers feed FLUX.2 [klein] in the window, on the real engine thread with the tiny Klein
model: an edit by instruction with two reference layers comes out otherwise than without them, the
saved image keeps both pictures (in order, bottom layer first), and hiding them gives the plain edit back."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, ImageDraw

from engine.cli import main
from tests.desktop_app.conftest import screenshot


def test_reference_layers_feed_a_klein_edit(make_studio, data_dir, qtbot, tmp_path):
    models = tmp_path / "models"
    assert main(["make-test-model", str(models / "klein"), "--family", "flux2-klein"]) == 0
    model = models / "klein"
    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(models))
    qtbot.waitUntil(lambda: any(m.path == str(model) and m.usable for m in studio.catalog.models), timeout=30_000)
    doc, p, w = studio.actions.document, studio.params, studio.window
    p.model = str(model)
    p.prompt, p.steps, p.seed_mode, p.seed, p.width, p.height = "put the hat on the fox", 3, "fixed", 7, 64, 64

    Image.new("RGB", (64, 64), (90, 120, 160)).save(tmp_path / "canvas.png")
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(tmp_path / "canvas.png")
    p.edit_mode = "img2img"

    def generate() -> tuple[np.ndarray, dict]:
        with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
            studio.actions.generate()
        with Image.open(doc.current_candidate().path) as png:
            return np.asarray(png.convert("RGB")).astype(int), json.loads(png.text["easel"])["request"]

    plain, recipe = generate()
    assert "references" not in recipe

    hat = Image.new("RGB", (96, 64), (250, 230, 40))
    ImageDraw.Draw(hat).ellipse((10, 5, 80, 60), fill=(200, 30, 30))
    hat.save(tmp_path / "hat.png")
    Image.new("RGB", (64, 80), (20, 160, 60)).save(tmp_path / "scarf.png")
    panel = w.canvas_panel.layers_panel
    assert panel.add_reference(str(tmp_path / "hat.png")) and panel.add_reference(str(tmp_path / "scarf.png"))
    layers = [layer for layer in doc.layers if layer.kind == "reference"]
    assert [layer.name for layer in layers] == ["Reference: hat", "Reference: scarf"]
    screenshot(w, "flux2-klein-reference-layers.png")

    steered, recipe = generate()
    assert not np.array_equal(steered, plain)  # the reference pictures reached Klein
    assert [r["weight"] for r in recipe["references"]] == [1.0, 1.0]
    assert [len(r["image_png"]) > 0 for r in recipe["references"]] == [True, True]

    for layer in layers:
        doc.set_layer_visible(layer.key, False)
    again, recipe = generate()
    assert np.array_equal(again, plain) and "references" not in recipe

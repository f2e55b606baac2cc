"""The canvas on the real engine thread with a tiny random-weight model: paint, inpaint, accept,
outpaint. Pixels outside the mask must come back bit-identical; the saved result carries its mask."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from PySide6.QtCore import QPointF, Qt

from engine.images import mask_from_png
from tests.desktop_app.conftest import screenshot


def drag(qtbot, view, points):
    vp = view.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=view.mapFromScene(QPointF(*points[0])))
    for p in points[1:]:
        qtbot.mouseMove(vp, view.mapFromScene(QPointF(*p)))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=view.mapFromScene(QPointF(*points[-1])))


def test_inpaint_and_outpaint_on_the_real_engine_keep_outside_pixels(make_studio, data_dir, tiny_models, qtbot, tmp_path):
    model = tiny_models.get("sd15")
    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(model.parent))
    qtbot.waitUntil(lambda: any(m.path == str(model) and m.usable for m in studio.catalog.models), timeout=30_000)
    doc, p, w = studio.actions.document, studio.params, studio.window
    p.model, p.prompt, p.steps, p.sampler, p.seed_mode, p.seed = str(model), "a boat", 2, "Euler", "fixed", 4

    source = Image.new("RGB", (100, 70), (40, 110, 180))  # not a multiple of 8: padded, cropped back
    ImageDraw.Draw(source).rectangle((0, 50, 100, 70), fill=(30, 80, 40))
    source.save(tmp_path / "lake.png")
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(tmp_path / "lake.png")
    doc.brush.set_size(16)
    doc.brush.set_hardness(0.5)
    drag(qtbot, w.canvas_panel.view, [(30 + i * 2, 35) for i in range(21)])
    mask = doc.mask.copy()
    assert mask.any() and (mask == 0).sum() > 0.7 * mask.size

    # Inpaint, whole image (104x72, padded), seam feathered over 3 px.
    p.edit_mode, p.only_masked, p.strength, p.mask_blur = "inpaint", False, 1.0, 3
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        studio.actions.generate()
    assert len(doc.candidates) == 1
    saved = doc.current_candidate().path
    studio.actions.canvas.accept()
    out = np.asarray(doc.image_pil())
    src = np.asarray(source)
    outside = mask == 0
    assert out.shape == src.shape
    assert np.array_equal(out[outside], src[outside])  # no change outside the mask, not even by one level
    assert np.abs(out[mask == 255].astype(int) - src[mask == 255]).mean() > 5  # the region was regenerated
    with Image.open(saved) as png:
        assert png.size == (100, 70) and "Steps: 2" in png.text["parameters"]
    assert np.array_equal(np.asarray(mask_from_png(saved)), mask)  # the mask travels with the result
    screenshot(w, "canvas-real-engine-accepted.png")

    # Outpaint: extend right by 40, "only masked" around the new strip at 64x64.
    before = np.asarray(doc.image_pil()).copy()
    assert not doc.has_mask()  # Accept cleared it: the outpaint regenerates only the new strip
    assert studio.actions.canvas.extend(0, 0, 40, 0, "blur")
    p.only_masked, p.width, p.height, p.mask_padding = True, 64, 64, 8
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        studio.actions.generate()
    studio.actions.canvas.accept()
    grown = np.asarray(doc.image_pil())
    assert grown.shape == (70, 140, 3)
    assert np.array_equal(grown[:, :100], before)  # the original stays bit-identical
    doc.undo_stack.undo()  # accept
    doc.undo_stack.undo()  # extend
    doc.undo_stack.undo()  # accept of the inpaint (and the mask it cleared)
    assert np.array_equal(np.asarray(doc.image_pil()), src)
    assert np.array_equal(doc.mask, mask)

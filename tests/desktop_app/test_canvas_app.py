"""The canvas in the main window: open (every image mode), paste, edit a result, generate from the
canvas through the queue, candidates, accept/discard; bad files refused with one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from desktop_app.state.canvas import qimage_to_array
from tests.desktop_app.conftest import screenshot
from tests.desktop_app.fakes import colour_for
from tests.engine.test_images import _png_header_only


def at(view, x, y):
    return view.mapFromScene(QPointF(x, y))


def drag(qtbot, view, points):
    vp = view.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=at(view, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(vp, at(view, *p))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=at(view, *points[-1]))


def scenery(w: int, h: int) -> Image.Image:
    im = Image.new("RGB", (w, h), (70, 130, 190))
    d = ImageDraw.Draw(im)
    d.rectangle((0, h * 2 // 3, w, h), fill=(60, 140, 60))
    d.ellipse((w // 8, h // 8, w // 8 + h // 3, h // 8 + h // 3), fill=(250, 210, 60))
    return im


def open_and_wait(studio, qtbot, path):
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(path)


def test_open_every_image_mode_upright(make_studio, data_dir, fake_engine, fake_model, qtbot, tmp_path):
    studio = make_studio(data_dir, fake_engine)
    doc = studio.actions.document
    # RGBA: transparency becomes the mask, shown over white.
    rgba = Image.new("RGBA", (80, 40), (200, 30, 30, 255))
    rgba.paste((0, 0, 0, 0), (40, 0, 80, 40))
    rgba.save(tmp_path / "cutout.png")
    open_and_wait(studio, qtbot, tmp_path / "cutout.png")
    assert (doc.width, doc.height) == (80, 40) and doc.source == "cutout.png"
    assert (doc.mask[:, 40:] == 255).all() and (doc.mask[:, :40] == 0).all()
    assert doc.image_pil().getpixel((60, 10)) == (255, 255, 255)
    assert studio.params.edit_mode == "inpaint"  # opening an image to edit switches Generate to editing
    assert studio.window.canvas_panel.showing_canvas and studio.window.center_stack.currentWidget() is studio.window.canvas_panel
    # EXIF orientation 6: stored landscape, shown portrait.
    photo = scenery(60, 30)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    open_and_wait(studio, qtbot, tmp_path / "phone.jpg")
    assert (doc.width, doc.height) == (30, 60) and not doc.mask.any()
    # 16-bit greyscale, CMYK, palette with transparency.
    Image.fromarray(np.full((20, 30), 32896, np.uint16)).save(tmp_path / "grey16.png")
    open_and_wait(studio, qtbot, tmp_path / "grey16.png")
    assert doc.image_pil().getpixel((3, 3)) == (128, 128, 128)
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(tmp_path / "print.tif")
    open_and_wait(studio, qtbot, tmp_path / "print.tif")
    assert doc.image_pil().getpixel((3, 3)) == (255, 0, 0)
    pal = Image.new("P", (20, 10), 1)
    pal.putpalette([0, 0, 0, 20, 90, 250] + [0] * 762)
    pal.paste(0, (0, 0, 5, 10))
    pal.save(tmp_path / "pal.png", transparency=0)
    open_and_wait(studio, qtbot, tmp_path / "pal.png")
    assert doc.image_pil().getpixel((10, 5)) == (20, 90, 250) and doc.mask[5, 2] == 255 and doc.mask[5, 10] == 0
    # Every open is undoable: back to the 16-bit image.
    doc.undo_stack.undo()
    assert (doc.width, doc.height) == (20, 20)


@pytest.mark.parametrize("kind", ["bomb", "truncated", "text"])
def test_bad_files_are_refused_with_one_line_and_the_canvas_kept(make_studio, data_dir, fake_engine, fake_model, qtbot, tmp_path, kind):
    studio = make_studio(data_dir, fake_engine)
    doc = studio.actions.document
    scenery(64, 48).save(tmp_path / "good.png")
    open_and_wait(studio, qtbot, tmp_path / "good.png")
    before = doc.image_array.copy()
    bad = tmp_path / "bad.png"
    if kind == "bomb":
        bad.write_bytes(_png_header_only(50_000, 50_000))
    elif kind == "truncated":
        scenery(300, 300).save(tmp_path / "big.png")
        bad.write_bytes((tmp_path / "big.png").read_bytes()[:400])
    else:
        bad.write_text("not an image")
    with qtbot.waitSignal(studio.reporter.error_reported, timeout=10_000) as blocker:
        studio.actions.canvas.open_file(bad)
    message = blocker.args[0].message
    assert "\n" not in message and "bad.png" in message
    assert ("refused" in message) if kind == "bomb" else ("cannot read image" in message)
    assert studio.window.banner.isVisible()
    assert np.array_equal(doc.image_array, before)


def test_paste_and_edit_a_result(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    w, doc = studio.window, studio.actions.document
    img = QImage(48, 32, QImage.Format.Format_RGB32)
    img.fill(QColor(10, 20, 30))
    QGuiApplication.clipboard().setImage(img)
    w.canvas_panel.paste_clipboard()
    assert (doc.width, doc.height) == (48, 32) and doc.image_pil().getpixel((1, 1)) == (10, 20, 30)
    assert doc.source == "clipboard"
    # A txt2img result shows in the viewer; "Edit in canvas" makes it (its file in the gallery) the canvas.
    studio.params.edit_mode = "txt2img"
    p = studio.params
    p.prompt, p.steps, p.width, p.height, p.seed_mode, p.seed = "a barn", 2, 64, 64, "fixed", 9
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    qtbot.waitUntil(lambda: not w.canvas_panel.showing_canvas and w.canvas_panel.viewer_bar.isVisible(), timeout=5000)
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        qtbot.mouseClick(w.canvas_panel.edit_result_button, Qt.MouseButton.LeftButton)
    assert (doc.width, doc.height) == (64, 64) and doc.image_pil().getpixel((5, 5)) == colour_for(9)
    assert doc.source == studio.gallery.absolute(studio.gallery.current).name
    assert w.canvas_panel.showing_canvas and studio.params.edit_mode == "inpaint"
    doc.undo_stack.undo()  # editing a result is undoable too
    assert (doc.width, doc.height) == (48, 32)


def test_inpaint_from_the_canvas_gives_candidates_to_compare_accept_and_undo(make_studio, data_dir, fake_engine, fake_model, qtbot, tmp_path):
    studio = make_studio(data_dir, fake_engine)
    w, doc, p = studio.window, studio.actions.document, studio.params
    w.resize(1400, 900)
    scenery(300, 180).save(tmp_path / "landscape.png")
    open_and_wait(studio, qtbot, tmp_path / "landscape.png")
    assert not w.prompt_panel.generate_button.isEnabled()  # no mask yet
    assert "paint over the area" in w.prompt_panel.blocked_label.text()
    view = w.canvas_panel.view
    view.setFocus()
    doc.brush.set_size(40)
    doc.brush.set_hardness(0.3)
    drag(qtbot, view, [(200 + i * 4, 60 + (i % 5) * 3) for i in range(20)])
    assert doc.has_mask() and w.prompt_panel.generate_button.isEnabled()
    screenshot(w, "canvas-with-mask.png")

    p.prompt, p.steps, p.seed_mode, p.seed, p.batch_count = "a red balloon", 2, "fixed", 11, 2
    p.only_masked, p.mask_blur = False, 4
    source = doc.image_array.copy()
    mask = doc.mask.copy()
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        job = studio.actions.generate()
    request = fake_engine.calls[-1]
    assert request.mode.value == "inpaint" and (request.width, request.height) == (304, 184)  # padded, not stretched
    assert np.array_equal(np.asarray(request.mask), mask)
    assert len(doc.candidates) == 2 and w.canvas_panel.candidate_bar.isVisible()
    assert w.canvas_panel.showing_canvas
    assert len(list((data_dir / "outputs").glob("*.png"))) == 2  # candidates are saved results
    gallery = studio.gallery.model
    assert gallery.rowCount() == 2 and studio.gallery.current is None  # in the gallery, not taking the view
    qtbot.waitUntil(lambda: all(gallery.data(gallery.index(r), gallery.ThumbnailRole) is not None for r in range(2)),
                    timeout=10_000)
    screenshot(w, "canvas-with-candidate.png")

    qtbot.keyClick(view, Qt.Key.Key_C)  # before / after
    assert doc.show_before and np.array_equal(qimage_to_array(view.image_item.image), doc.image_array)
    qtbot.keyClick(view, Qt.Key.Key_C)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert doc.candidate_index == 1
    bar = w.canvas_panel.candidate_bar
    bar.accept_button.setFocus()
    qtbot.mouseClick(bar.accept_button, Qt.MouseButton.LeftButton)
    assert not doc.candidates
    out = doc.image_array
    outside = mask == 0
    assert np.array_equal(out[outside], source[outside])  # outside the mask: bit-identical
    seed = colour_for(12)
    inside = mask == 255
    assert (np.abs(out[inside][:, 2].astype(int) - seed[0]) <= 1).all()  # the accepted candidate (seed 12)
    assert "Accepted" in studio.status.activity
    # The mask that made the result is cleared with it: the next outpaint does not redo this area.
    assert not doc.has_mask()
    assert p.edit_mode == "inpaint" and "paint over the area" in w.prompt_panel.blocked_label.text()
    # Focus stays on the canvas (not the gallery's search box).
    assert QApplication.focusWidget() is view
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(doc.image_array, source)
    assert np.array_equal(doc.mask, mask)  # one undo brings back the image and its mask
    assert job.status.value == "done"


def test_discard_and_img2img_and_outpaint_requests(make_studio, data_dir, fake_engine, fake_model, qtbot, tmp_path):
    studio = make_studio(data_dir, fake_engine)
    doc, p = studio.actions.document, studio.params
    scenery(100, 70).save(tmp_path / "small.png")
    open_and_wait(studio, qtbot, tmp_path / "small.png")
    p.prompt, p.steps = "x", 2
    p.edit_mode = "img2img"
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    r = fake_engine.calls[-1]
    assert r.mode.value == "img2img" and (r.width, r.height) == (104, 72) and r.init_image.size == (100, 70)
    assert len(doc.candidates) == 1
    saved = list((data_dir / "outputs").glob("*.png"))
    assert len(saved) == 1 and studio.gallery.model.rowCount() == 1
    studio.window.canvas_panel.candidate_bar.discard_button.click()
    assert not doc.candidates and doc.undo_stack.count() == 1  # only the open: discard changed nothing
    # The discarded result leaves the gallery for its trash; the status bar says what happened.
    qtbot.waitUntil(lambda: studio.gallery.model.rowCount() == 0, timeout=5000)
    assert not saved[0].exists() and list((data_dir / "outputs" / ".trash").glob("*.png"))
    assert "over the canvas" not in studio.status.activity and "Discarded 1 result" in studio.status.activity
    # Outpaint: extend right by 64, the new strip is the mask, Generate inpaints it.
    assert studio.actions.canvas.extend(0, 0, 64, 0, "blur")
    assert (doc.width, doc.height) == (164, 70) and p.edit_mode == "inpaint"
    p.only_masked, p.width, p.height = True, 64, 64
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    r = fake_engine.calls[-1]
    assert r.only_masked and (r.width, r.height) == (64, 64) and r.mask.size == (164, 70)
    cand = doc.current_candidate()
    assert cand is not None and cand.image.size().toTuple() == (164, 70)

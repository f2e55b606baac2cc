"""The canvas as a user drives it: real mouse events through QTest on the view's viewport."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage

from desktop_app.state.canvas import CanvasDocument, array_to_rgb
from desktop_app.ui.canvas.view import CanvasView  # noqa: F401  (annotations)

W, H = 200, 120


def photo(w: int = W, h: int = H, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))


@pytest.fixture
def canvas(qtbot):
    """The canvas panel (tools, shortcuts, view) on a 200x120 photo, without the rest of the window."""
    from desktop_app.state.canvas_actions import CanvasActions
    from desktop_app.state.errors import ErrorReporter
    from desktop_app.state.params import GenerationParameters
    from desktop_app.state.status import EngineStatus
    from desktop_app.ui.canvas.panel import CanvasPanel

    doc = CanvasDocument()
    doc.set_image(photo(), "photo.png")
    doc.undo_stack.clear()
    actions = CanvasActions(doc, GenerationParameters(), None, ErrorReporter(), EngineStatus(),
                            spawn=lambda coro: coro.close())
    panel = CanvasPanel(actions, GenerationParameters())
    qtbot.addWidget(panel)
    panel.resize(700, 480)
    panel.show()
    qtbot.waitExposed(panel)
    view = panel.view
    view.setFocus()
    return doc, view


def at(view: CanvasView, x: float, y: float):
    return view.mapFromScene(QPointF(x, y))


def drag(qtbot, view: CanvasView, points, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    vp = view.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, modifier, at(view, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(vp, at(view, *p))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, modifier, at(view, *points[-1]))


def line(x0, y0, x1, y1, n=20):
    return [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(n + 1)]


def distance_to_segment(x0, y0, x1, y1, shape):
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    return np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))


def test_a_stroke_paints_along_its_path_and_nowhere_else(canvas, qtbot):
    doc, view = canvas
    doc.brush.set_size(12)
    doc.brush.set_hardness(1.0)
    drag(qtbot, view, line(20, 30, 180, 90))
    m = doc.mask
    d = distance_to_segment(20, 30, 180, 90, m.shape)
    assert (m[d < 4.5] == 255).all(), "pixels on the path are fully masked"
    assert (m[d > 7.5] == 0).all(), "nothing masked away from the path"
    assert doc.undo_stack.count() == 1  # one stroke, one undo step


def test_size_and_hardness_change_the_footprint(canvas, qtbot):
    doc, view = canvas
    footprints = {}
    for size, hardness in ((8, 1.0), (30, 1.0), (30, 0.0)):
        doc.clear_mask()
        doc.brush.set_size(size)
        doc.brush.set_hardness(hardness)
        drag(qtbot, view, line(30, 60, 170, 60))
        footprints[size, hardness] = doc.mask.copy()
    rows = {k: np.flatnonzero(v[:, 100]) for k, v in footprints.items()}
    assert len(rows[8, 1.0]) in range(7, 11) and len(rows[30, 1.0]) in range(29, 33)
    hard, soft = footprints[30, 1.0][:, 100], footprints[30, 0.0][:, 100]
    assert ((hard > 0) & (hard < 255)).sum() <= 2  # a hard brush: full inside, a 1 px anti-aliased rim
    assert ((soft > 0) & (soft < 255)).sum() >= 20  # a soft brush: a ramp from the centre out
    assert soft.max() >= 240 and soft[48] < soft.max() - 40  # strongest at the centre line


def test_opacity_limits_a_stroke_and_the_eraser_removes(canvas, qtbot):
    doc, view = canvas
    doc.brush.set_size(20)
    doc.brush.set_hardness(1.0)
    doc.brush.set_opacity(0.5)
    drag(qtbot, view, line(20, 60, 180, 60) + line(180, 60, 20, 61))  # back over itself: no build-up
    assert doc.mask[60, 100] == 128
    doc.brush.set_opacity(1.0)
    drag(qtbot, view, line(20, 60, 180, 60))
    qtbot.keyClick(view, Qt.Key.Key_E)
    assert doc.brush.tool == "eraser"
    drag(qtbot, view, line(100, 20, 100, 100))
    assert doc.mask[60, 100] == 0 and doc.mask[60, 60] == 255
    assert doc.undo_stack.count() == 3


def test_rectangle_and_lasso_fill_and_ctrl_clears(canvas, qtbot):
    doc, view = canvas
    qtbot.keyClick(view, Qt.Key.Key_R)
    drag(qtbot, view, [(40, 20), (80, 50), (120, 80)])
    assert (doc.mask[20:80, 40:120] == 255).all() and doc.mask[:, :38].max() == 0
    drag(qtbot, view, [(60, 30), (100, 70)], Qt.KeyboardModifier.ControlModifier)
    assert doc.mask[50, 80] == 0 and doc.mask[25, 45] == 255
    qtbot.keyClick(view, Qt.Key.Key_L)
    drag(qtbot, view, [(150, 10), (190, 10), (190, 50), (150, 50), (150, 12)])
    assert doc.mask[30, 170] == 255 and doc.mask[60, 170] == 0


def _random_op(rng: random.Random, qtbot, doc: CanvasDocument, view: CanvasView) -> str:
    kind = rng.choice(["brush", "brush", "eraser", "rectangle", "lasso", "invert", "clear", "grow", "shrink",
                       "feather", "extend"])
    if kind in ("brush", "eraser", "rectangle", "lasso"):
        doc.brush.set_tool(kind)
        doc.brush.set_size(rng.choice([3, 9, 25, 60]))
        doc.brush.set_hardness(rng.random())
        doc.brush.set_opacity(rng.choice([0.3, 0.7, 1.0]))
        w, h = doc.width, doc.height
        pts = [(rng.uniform(-10, w + 10), rng.uniform(-10, h + 10)) for _ in range(rng.randint(3, 8))]
        drag(qtbot, view, pts, Qt.KeyboardModifier.ControlModifier if rng.random() < 0.2 else Qt.KeyboardModifier.NoModifier)
    elif kind == "invert":
        doc.invert_mask()
    elif kind == "clear":
        doc.clear_mask()
    elif kind == "grow":
        doc.grow_mask(rng.randint(1, 6))
    elif kind == "shrink":
        doc.grow_mask(-rng.randint(1, 6))
    elif kind == "feather":
        doc.feather_mask(rng.randint(1, 4))
    elif kind == "extend":
        doc.extend(rng.randint(0, 16), rng.randint(0, 16), rng.randint(0, 16), 8, rng.choice(["edge", "blur"]))
    return kind


def test_undo_redo_restores_exact_mask_bytes_over_50_mixed_operations(canvas, qtbot):
    doc, view = canvas
    rng = random.Random(5)
    states = [(doc.mask.shape, doc.mask_bytes(), doc.image_array.tobytes())]
    kinds = []
    while len(states) <= 50:  # 50 operations that each changed something (one that changed nothing adds no step)
        kinds.append(_random_op(rng, qtbot, doc, view))
        if doc.undo_stack.count() == len(states):
            states.append((doc.mask.shape, doc.mask_bytes(), doc.image_array.tobytes()))
        assert doc.undo_stack.count() == len(states) - 1
    assert len(set(kinds)) >= 10
    for expected in reversed(states[:-1]):
        qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert (doc.mask.shape, doc.mask_bytes(), doc.image_array.tobytes()) == expected
    assert not doc.undo_stack.canUndo()
    for expected in states[1:]:
        qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        assert (doc.mask.shape, doc.mask_bytes(), doc.image_array.tobytes()) == expected
    # Steps hold patches of what they changed, not copies of the whole canvas per step.
    whole = doc.mask.nbytes + doc.image_array.nbytes
    assert doc.undo_bytes() < whole * len(states) / 4


def test_zoom_and_pan_do_not_change_mask_resolution(canvas, qtbot):
    doc, view = canvas
    doc.brush.set_size(10)
    doc.brush.set_hardness(1.0)
    footprints = []
    for zoom in (4.0, 0.3, 1.0):
        doc.clear_mask()
        view.set_zoom(zoom)
        view.centerOn(100, 60)
        vp = view.viewport()  # pan with the middle button: the view moves, the image does not
        start = at(view, 100, 60)
        qtbot.mousePress(vp, Qt.MouseButton.MiddleButton, pos=start)
        qtbot.mouseMove(vp, start + QPoint(30, 20))
        qtbot.mouseRelease(vp, Qt.MouseButton.MiddleButton, pos=start + QPoint(30, 20))
        drag(qtbot, view, line(90, 60, 110, 60, 8))
        assert doc.mask.shape == (H, W)
        shot = view.viewport().grab().toImage()
        overlay, plain = shot.pixelColor(at(view, 100, 60)), shot.pixelColor(at(view, 100, 20))
        assert overlay.red() > plain.red() + 30  # the mask shows (tinted) at this zoom too
        footprints.append(np.argwhere(doc.mask == 255))
    assert view.zoom == pytest.approx(1.0)
    spans = [(f.min(axis=0).tolist(), f.max(axis=0).tolist()) for f in footprints]
    assert spans[0] == spans[1] == spans[2]  # the same image pixels at 400%, 30% and 100%


def test_wheel_zooms_around_the_cursor_and_fit_and_100_percent_keys(canvas, qtbot):
    doc, view = canvas
    from PySide6.QtGui import QWheelEvent

    under = at(view, 50, 40)
    event = QWheelEvent(QPointF(under), QPointF(view.viewport().mapToGlobal(under)), QPoint(0, 0), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    before = view.zoom
    view.wheelEvent(event)
    assert view.zoom == pytest.approx(before * 1.5625)
    still = view.image_pos(QPointF(under))
    assert abs(still.x() - 50) < 1.5 and abs(still.y() - 40) < 1.5

    def on_screen():  # where the whole image is drawn, in viewport pixels
        return view.mapFromScene(view.image_item.sceneBoundingRect()).boundingRect()

    viewport = view.viewport().rect()
    for fit, actual in ((Qt.KeyboardModifier.NoModifier,) * 2, (Qt.KeyboardModifier.ControlModifier,) * 2):
        view.set_zoom(0.3)
        qtbot.keyClick(view, Qt.Key.Key_0, fit)  # Fit: the whole image shows, as large as the view allows
        shown = on_screen()
        assert viewport.contains(shown), (shown, viewport)
        assert viewport.width() - shown.width() <= 20 or viewport.height() - shown.height() <= 20
        assert shown.width() > 2 * W  # this 200x120 image is enlarged to fill the 700-wide panel
        qtbot.keyClick(view, Qt.Key.Key_1, actual)  # 100%: one image pixel per screen pixel
        assert view.zoom == pytest.approx(1.0)
        assert abs(on_screen().width() - W) <= 1 and abs(on_screen().height() - H) <= 1


def test_outpaint_grows_the_image_and_the_mask_and_undo_crops_back(canvas, qtbot):
    doc, view = canvas
    doc.brush.set_size(10)
    drag(qtbot, view, line(50, 50, 60, 50))
    mask_before, image_before = doc.mask.copy(), doc.image_array.copy()
    doc.extend(16, 0, 40, 8, "edge")
    assert (doc.width, doc.height) == (W + 56, H + 8)
    assert (doc.mask[:, :16] == 255).all() and (doc.mask[:, -40:] == 255).all() and (doc.mask[-8:] == 255).all()
    assert np.array_equal(doc.mask[0:H, 16:16 + W], mask_before)  # the painted mask moved with the image
    assert np.array_equal(doc.image_array[0:H, 16:16 + W], image_before)  # original pixels untouched
    assert np.array_equal(doc.image_array[5, W + 16:, :3], np.repeat(image_before[5:6, -1, :3], 40, axis=0))
    assert view.image_item.boundingRect().width() == W + 56
    doc.undo_stack.undo()
    assert np.array_equal(doc.mask, mask_before) and np.array_equal(doc.image_array, image_before)


def test_mask_show_hide_invert_and_bracket_keys(canvas, qtbot):
    doc, view = canvas

    def tint_at(x, y):  # how much redder the mask overlay makes this image pixel look on screen
        shot = view.viewport().grab().toImage()
        return shot.pixelColor(at(view, x, y)).red() - shot.pixelColor(at(view, x, 110)).red()

    doc.brush.set_size(20)
    doc.brush.set_hardness(1.0)
    drag(qtbot, view, line(20, 30, 180, 30))
    assert tint_at(100, 30) > 30
    qtbot.keyClick(view, Qt.Key.Key_M)  # M hides the mask overlay; the mask itself stays
    assert not view.mask_item.isVisible() and abs(tint_at(100, 30)) < 30
    assert doc.mask[30, 100] == 255
    qtbot.keyClick(view, Qt.Key.Key_M)  # and shows it again
    assert view.mask_item.isVisible() and tint_at(100, 30) > 30

    painted = doc.mask.copy()
    qtbot.keyClick(view, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)  # Ctrl+I inverts
    assert np.array_equal(doc.mask, 255 - painted)
    qtbot.keyClick(view, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(doc.mask, painted)

    qtbot.keyClick(view, Qt.Key.Key_BracketRight)  # ] larger brush, [ smaller: the size box follows
    panel = view.window()
    larger = doc.brush.size
    assert larger > 20 and panel.size_spin.value() == round(larger)
    qtbot.keyClick(view, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(view, Qt.Key.Key_BracketLeft)
    assert doc.brush.size < 20 < larger and panel.size_spin.value() == round(doc.brush.size)


def test_candidate_accept_writes_only_changed_pixels_and_is_undoable(canvas, qtbot):
    doc, view = canvas
    source = doc.image_array.copy()
    changed = doc.image_array.copy()
    changed[40:80, 50:150, :3] = (10, 200, 30)
    from desktop_app.state.canvas import wrap_rgb32

    assert doc.add_candidates([wrap_rgb32(changed).copy()], ["/tmp/r.png"], [7], source)
    assert view.image_item.image.pixelColor(60, 50) == QColor(30, 200, 10)  # the candidate is shown...
    doc.set_show_before(True)
    assert view.image_item.image.pixelColor(60, 50) != QColor(30, 200, 10)  # ...and "before" is the canvas
    drag(qtbot, view, line(10, 10, 30, 10))  # no painting while results wait
    assert not doc.mask.any()
    doc.accept_candidate()
    assert np.array_equal(doc.image_array, changed) and not doc.candidates
    doc.undo_stack.undo()
    assert np.array_equal(doc.image_array, source)
    assert doc.undo_bytes() <= 40 * 100 * 4 + 64  # the patch is the changed rect, not the image


def test_dropping_and_pasting_images(canvas, qtbot, tmp_path):
    doc, view = canvas
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    got = []
    view.files_dropped.connect(got.append)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "a.png"))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    view.dropEvent(event)
    assert got == [[str(tmp_path / "a.png")]]
    img = QImage(33, 21, QImage.Format.Format_ARGB32)
    img.fill(QColor(0, 0, 255, 255))
    pasted = []
    view.image_dropped.connect(pasted.append)
    mime2 = QMimeData()
    mime2.setImageData(img)
    view.dropEvent(QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime2, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
    assert pasted and pasted[0].size().toTuple() == (33, 21)


def test_document_round_trips_pil_images():
    doc = CanvasDocument()
    src = photo(37, 23)
    doc.set_image(src, "x")
    assert np.array_equal(np.asarray(doc.image_pil()), np.asarray(src))
    assert np.array_equal(np.asarray(array_to_rgb(doc.image_array)), np.asarray(src))


def test_tablet_pressure_scales_the_brush(canvas, qtbot):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QInputDevice, QMouseEvent, QPointingDevice, QTabletEvent
    from PySide6.QtWidgets import QApplication

    doc, view = canvas
    doc.brush.set_size(40)
    doc.brush.set_hardness(1.0)
    pen = QPointingDevice("test stylus", 77, QInputDevice.DeviceType.Stylus, QPointingDevice.PointerType.Pen,
                          QInputDevice.Capability.Position | QInputDevice.Capability.Pressure, 1, 3)
    vp = view.viewport()

    def send(kind_tablet, kind_mouse, x, y, pressure, buttons):
        pos = QPointF(at(view, x, y))
        glob = QPointF(vp.mapToGlobal(pos.toPoint()))
        tab = QTabletEvent(kind_tablet, pen, pos, glob, pressure, 0, 0, 0, 0, 0, Qt.KeyboardModifier.NoModifier,
                           Qt.MouseButton.LeftButton, buttons)
        QApplication.sendEvent(vp, tab)
        # What Qt sends next for a tablet event the widget did not accept: a mouse event from the pen.
        mouse = QMouseEvent(kind_mouse, pos, pos, glob, Qt.MouseButton.LeftButton, buttons,
                            Qt.KeyboardModifier.NoModifier, pen)
        QApplication.sendEvent(vp, mouse)

    left = Qt.MouseButton.LeftButton
    send(QEvent.Type.TabletPress, QEvent.Type.MouseButtonPress, 40, 60, 0.25, left)
    for x in range(45, 161, 5):
        send(QEvent.Type.TabletMove, QEvent.Type.MouseMove, x, 60, 0.25 if x < 100 else 1.0, left)
    send(QEvent.Type.TabletRelease, QEvent.Type.MouseButtonRelease, 160, 60, 0.0, Qt.MouseButton.NoButton)
    light = np.flatnonzero(doc.mask[:, 70]).size
    firm = np.flatnonzero(doc.mask[:, 140]).size
    assert 8 <= light <= 13 and 38 <= firm <= 43  # a quarter of the pressure, a quarter of the width

"""Control layers as the artist sees them on the canvas: a control layer made from the picture shows
the preprocessor's output (what the control model gets) and can be painted over; depth from the
picture with the tiny Depth Anything model (one line without it); the pose editor: a figure's joints
dragged on the canvas redraw the OpenPose image, undo, and survive .ora and quit/restart."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image, ImageDraw
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor

from desktop_app.state import canvas_ora
from desktop_app.state.canvas_layers import A, B, G, R
from engine import families, preprocess
from tests.desktop_app.conftest import screenshot

W, H = 256, 192


def picture() -> Image.Image:
    """A light ground with a dark square and a disc: edges, lines and depth to find."""
    im = Image.new("RGB", (W, H), (230, 226, 214))
    d = ImageDraw.Draw(im)
    d.rectangle((30, 40, 110, 150), fill=(40, 60, 90))
    d.ellipse((140, 50, 230, 140), fill=(180, 70, 50))
    return im


def control_image(doc, layer) -> Image.Image:
    return next(g["image"] for g in doc.guides() if g["name"] == layer.name)


def open_picture(studio, qtbot, tmp_path) -> None:
    picture().save(tmp_path / "still.png")
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(tmp_path / "still.png")


def menu_action(menu, text: str):
    return next(a for a in menu.actions() if a.text() == text)


def shown_at(view, x: float, y: float) -> QColor:
    return view.grab().toImage().pixelColor(view.mapFromScene(QPointF(x, y)))


# ------------------------------------------------------------------ the preprocessed image on the canvas


def test_a_control_layer_made_from_the_picture_shows_the_canny_edges_and_takes_paint(make_studio, data_dir,
                                                                                     fake_engine, qtbot, tmp_path):
    studio = make_studio(data_dir, fake_engine)
    open_picture(studio, qtbot, tmp_path)
    doc, canvas, w = studio.actions.document, studio.actions.canvas, studio.window
    lp, view = w.canvas_panel.layers_panel, w.canvas_panel.view
    ran_on = []
    real = preprocess.canny
    # Where the work runs (the real preprocessor, only watched): not the GUI thread.
    canvas_thread = threading.current_thread()
    monkey = pytest.MonkeyPatch()
    monkey.setattr(preprocess, "canny", lambda *a, **k: (ran_on.append(threading.current_thread()), real(*a, **k))[1])
    try:
        menu_action(lp.picture_menu, "Canny edges").trigger()
        layer = doc.active_layer
        assert layer.kind == "control" and layer.props["control"] == "canny"
        assert not layer.array[..., A].any()  # made off the GUI thread: not there yet when the menu returns
        qtbot.waitUntil(lambda: layer.array[..., A].any(), timeout=15_000)
    finally:
        monkey.undo()
    assert ran_on and ran_on[0] is not canvas_thread
    expected = np.asarray(preprocess.canny(picture()))
    # The layer's pixels are the control image the model gets: the picture's canny edges, white on black.
    assert np.array_equal(np.asarray(control_image(doc, layer)), expected)
    assert layer.props["made_from"] == "canny" and "made from the picture" in lp.detail_label.text()
    (control,) = canvas.controls()
    assert np.array_equal(np.asarray(control.image), expected) and control.preprocessor == "canny"
    # And on screen: an edge pixel is white, the square's inside (dark in the picture) is black now.
    ys, xs = np.nonzero(expected[..., 0])
    qtbot.waitUntil(lambda: shown_at(view, 70, 95) == QColor(0, 0, 0), timeout=5_000)
    edge = next((x, y) for x, y in zip(xs, ys) if 35 < y < 145 and x < 120)
    assert shown_at(view, edge[0] + 0.5, edge[1] + 0.5).lightness() > 200

    # Paint over it: the control image follows the paint, as shown.
    doc.brush.set_colour(QColor(255, 255, 255))
    doc.brush.set_size(10)
    doc.brush.set_hardness(1.0)
    doc.begin_stroke(60, 170)
    doc.stroke_to(200, 170)
    doc.end_stroke()
    (painted,) = canvas.controls()
    assert np.asarray(painted.image)[170, 130].tolist() == [255, 255, 255] and expected[170, 130].tolist() == [0, 0, 0]
    doc.undo_stack.undo()  # the stroke
    doc.undo_stack.undo()  # the making: an empty layer that follows the picture again
    assert not layer.array[..., A].any() and "made_from" not in layer.props


def test_make_from_picture_on_the_selected_layer_and_its_kind_changes(make_studio, data_dir, fake_engine, qtbot,
                                                                      tmp_path):
    studio = make_studio(data_dir, fake_engine)
    open_picture(studio, qtbot, tmp_path)
    doc, lp = studio.actions.document, studio.window.canvas_panel.layers_panel
    layer = doc.add_layer("control")
    lp.control_combo.setCurrentIndex(lp.control_combo.findData("lineart"))
    assert lp.make_button.isVisibleTo(lp) and not lp.add_figure_button.isVisibleTo(lp)
    qtbot.mouseClick(lp.make_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: layer.props.get("made_from") == "lineart", timeout=15_000)
    assert np.array_equal(np.asarray(control_image(doc, layer)), np.asarray(preprocess.lineart(picture())))
    # A pose layer is posed, not made: one plain line.
    lp.control_combo.setCurrentIndex(lp.control_combo.findData("pose"))
    assert not lp.make_button.isVisibleTo(lp) and lp.add_figure_button.isVisibleTo(lp)
    notices = []
    studio.reporter.notice_posted.connect(notices.append)
    studio.actions.canvas.make_from_picture(layer.key, "pose")
    assert notices and "\n" not in notices[-1] and "Add figure" in notices[-1]


# ------------------------------------------------------------------ depth from the picture


def test_depth_from_the_picture_fills_the_layer_with_the_tiny_depth_model(make_studio, data_dir, fake_engine, qtbot,
                                                                          tmp_path):
    _family, model = families.test_models()["depth-anything"]
    folder = model.write(data_dir / "models" / "depth" / "depth-anything-tiny", "diffusers", 0)
    studio = make_studio(data_dir, fake_engine)
    open_picture(studio, qtbot, tmp_path)
    doc, w = studio.actions.document, studio.window
    lp = w.canvas_panel.layers_panel
    ran_on = []
    real = preprocess.depth
    monkey = pytest.MonkeyPatch()
    monkey.setattr(preprocess, "depth", lambda *a, **k: (ran_on.append(threading.current_thread().name),
                                                          real(*a, **k))[1])
    try:
        menu_action(lp.picture_menu, "Depth").trigger()
        layer = doc.active_layer
        qtbot.waitUntil(lambda: layer.props.get("made_from") == "depth", timeout=120_000)
    finally:
        monkey.undo()
    assert len(ran_on) == 1 and ran_on[0].startswith("easel-engine")  # the engine thread loads the model, not the window's
    expected = np.asarray(preprocess.depth(picture(), str(folder)))
    shown = np.asarray(control_image(doc, layer))
    assert np.array_equal(shown, expected) and shown.min() == 0 and shown.max() == 255
    assert layer.props["control"] == "depth"
    (control,) = studio.actions.canvas.controls()
    assert np.array_equal(np.asarray(control.image), expected) and control.preprocessor == "depth"
    doc.set_active(layer.key)
    w.resize(1280, 800)
    shot = screenshot(w, "canvas_depth.png")
    assert shot.is_file()
    # The depth map is what the canvas shows (grey levels, not the picture's colours).
    view = w.canvas_panel.view
    c = shown_at(view, 70, 95)
    assert abs(c.red() - c.green()) <= 1 and abs(c.green() - c.blue()) <= 1
    assert c.red() == expected[95, 70, 0]


def test_depth_from_the_picture_without_a_depth_model_says_what_to_put_where(make_studio, data_dir, fake_engine,
                                                                             qtbot, tmp_path):
    studio = make_studio(data_dir, fake_engine)
    open_picture(studio, qtbot, tmp_path)
    doc = studio.actions.document
    lp = studio.window.canvas_panel.layers_panel
    reports = []
    studio.reporter.error_reported.connect(lambda report: reports.append(report.message))
    menu_action(lp.picture_menu, "Depth").trigger()
    layer = doc.active_layer
    qtbot.waitUntil(lambda: bool(reports), timeout=15_000)
    line = reports[-1]
    assert "\n" not in line and "config.json" in line and "model.safetensors" in line
    assert str(data_dir / "models" / "depth") in line
    assert not layer.array[..., A].any() and "made_from" not in layer.props
    qtbot.waitUntil(lambda: line in studio.window.banner.message.text(), timeout=5_000)


# ------------------------------------------------------------------ the pose editor


@pytest.fixture
def pose_panel(qtbot):
    from desktop_app.state.canvas import CanvasDocument
    from desktop_app.state.canvas_actions import CanvasActions
    from desktop_app.state.errors import ErrorReporter
    from desktop_app.state.params import GenerationParameters
    from desktop_app.state.status import EngineStatus
    from desktop_app.ui.canvas.panel import CanvasPanel

    doc = CanvasDocument()
    doc.set_image(picture(), "still.png")
    doc.undo_stack.clear()
    actions = CanvasActions(doc, GenerationParameters(), None, ErrorReporter(), EngineStatus(),
                            spawn=lambda coro: coro.close())
    widget = CanvasPanel(actions, GenerationParameters())
    qtbot.addWidget(widget)
    widget.resize(1000, 620)
    widget.show()
    qtbot.waitExposed(widget)
    widget.view.setFocus()
    return widget


def drag(qtbot, view, start, end, steps: int = 6) -> None:
    vp = view.viewport()
    a, b = QPointF(*start), QPointF(*end)
    points = [view.mapFromScene(a + (b - a) * (i / steps)) for i in range(steps + 1)]
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
    for p in points[1:]:
        qtbot.mouseMove(vp, p)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1])


def test_dragging_a_joint_of_a_pose_figure_redraws_the_openpose_image_and_undoes(pose_panel, qtbot, tmp_path):
    doc, view, lp, canvas = pose_panel.doc, pose_panel.view, pose_panel.layers_panel, pose_panel.canvas
    menu_action(lp.add_menu, "Pose layer (a figure to pose)").trigger()
    layer = doc.active_layer
    assert layer.props["control"] == "pose" and len(layer.props["pose"]) == 1
    assert doc.undo_stack.count() == 2  # the layer, then its figure
    figure = layer.props["pose"][0]
    # The layer's pixels over black are exactly OpenPose's drawing of the figure.
    first = np.asarray(control_image(doc, layer)).copy()
    assert np.array_equal(first, np.asarray(preprocess.draw_pose([figure], (W, H))))
    assert view.pose_item.isVisible()
    wrist = figure[7]  # left wrist: on the image's right
    assert tuple(first[int(wrist[1]), int(wrist[0])]) == preprocess.POSE_COLOURS[7]
    # The picture shows round the figure (the layer is transparent there).
    assert shown_at(view, 20, 20) == QColor(230, 226, 214)

    target = (wrist[0] + 40, wrist[1] - 50)
    drag(qtbot, view, wrist, target)
    moved = layer.props["pose"][0][7]
    assert abs(moved[0] - target[0]) < 1.5 and abs(moved[1] - target[1]) < 1.5
    assert layer.props["pose"][0][:7] == figure[:7]  # only that joint moved
    after = np.asarray(control_image(doc, layer))
    assert np.array_equal(after, np.asarray(preprocess.draw_pose(layer.props["pose"], (W, H))))
    assert tuple(after[int(moved[1]), int(moved[0])]) == preprocess.POSE_COLOURS[7]
    assert not after[int(wrist[1]), int(wrist[0])].any()  # the old place is empty now
    qtbot.waitUntil(lambda: shown_at(view, moved[0] + 0.5, moved[1] + 0.5) == QColor(*preprocess.POSE_COLOURS[7]),
                    timeout=5_000)
    (control,) = canvas.controls()
    assert np.array_equal(np.asarray(control.image), after) and control.kind == "pose"
    assert doc.undo_stack.count() == 3 and "left wrist" in doc.undo_stack.undoText()
    screenshot(pose_panel, "canvas_pose.png")

    doc.undo_stack.undo()
    assert layer.props["pose"][0] == figure
    assert np.array_equal(np.asarray(control_image(doc, layer)), first)
    assert view.pose_item.people[0][7] == figure[7]  # the handles went back too
    doc.undo_stack.redo()
    assert layer.props["pose"][0][7] == moved

    # Ctrl+click hides a joint (and its limbs); a second figure stands beside the first.
    elbow = layer.props["pose"][0][6]
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                     view.mapFromScene(QPointF(*elbow)))
    assert layer.props["pose"][0][6] is None
    # Shift+click puts it back, where clicked.
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     view.mapFromScene(QPointF(elbow[0] + 6, elbow[1] + 4)))
    back = layer.props["pose"][0][6]
    assert back is not None and abs(back[0] - elbow[0] - 6) < 1.5 and abs(back[1] - elbow[1] - 4) < 1.5
    doc.undo_stack.undo()
    assert layer.props["pose"][0][6] is None
    qtbot.mouseClick(lp.add_figure_button, Qt.MouseButton.LeftButton)
    assert len(layer.props["pose"]) == 2 and layer.props["pose"][1][1][0] > layer.props["pose"][0][1][0]
    assert np.array_equal(np.asarray(control_image(doc, layer)),
                          np.asarray(preprocess.draw_pose(layer.props["pose"], (W, H))))

    # The figures and their drawing survive an .ora round trip.
    path = tmp_path / "posed.ora"
    canvas_ora.write(path, canvas_ora.snapshot(doc))
    layers, _mask, _active = canvas_ora.to_layers(canvas_ora.read(path))
    back = next(x for x in layers if x.name == layer.name)
    assert back.props == layer.props and np.array_equal(back.array, layer.array)


def test_painting_on_a_pose_layer_away_from_the_joints_paints(pose_panel, qtbot):
    doc, view, lp = pose_panel.doc, pose_panel.view, pose_panel.layers_panel
    lp.add_pose_layer()
    layer = doc.active_layer
    figure = layer.props["pose"][0]
    doc.brush.set_colour(QColor(255, 0, 0))
    doc.brush.set_size(8)
    drag(qtbot, view, (10, 20), (40, 20))
    assert layer.props["pose"][0] == figure
    px = layer.array[20, 25]
    assert (px[R], px[G], px[B], px[A]) == (255, 0, 0, 255)


def test_a_pose_follows_its_layer_when_the_canvas_is_extended(pose_panel):
    doc = pose_panel.doc
    pose_panel.layers_panel.add_pose_layer()
    layer = doc.active_layer
    figure = layer.props["pose"][0]
    doc.extend(20, 10, 0, 0, "colour")
    moved = layer.props["pose"][0]
    assert moved[1] == [figure[1][0] + 20, figure[1][1] + 10]
    assert np.array_equal(np.asarray(control_image(doc, layer)),
                          np.asarray(preprocess.draw_pose(layer.props["pose"], (W + 20, H + 10))))
    doc.undo_stack.undo()
    assert layer.props["pose"][0] == figure and (layer.width, layer.height) == (W, H)


def test_a_posed_figure_survives_quit_and_restart(make_studio, data_dir, fake_engine, qtbot, tmp_path):
    studio = make_studio(data_dir, fake_engine)
    open_picture(studio, qtbot, tmp_path)
    doc = studio.actions.document
    lp = studio.window.canvas_panel.layers_panel
    lp.add_pose_layer()
    layer = doc.active_layer
    doc.begin_pose_drag(0, 4)
    doc.pose_drag_to(20.5, 30.25)
    doc.end_pose_drag()
    props, pixels = dict(layer.props), layer.array.copy()
    studio.window.close()
    assert studio.is_shut_down

    again = make_studio(data_dir, fake_engine)
    restored = next(x for x in again.actions.document.layers if x.name == layer.name)
    assert restored.props == props and restored.props["pose"][0][4] == [20.5, 30.25]
    assert np.array_equal(restored.array, pixels)
    # Still a pose to edit: its joints are where they were.
    again.actions.document.set_active(restored.key)
    assert again.actions.document.pose_joint_at(20.5, 30.25, 2) == (0, 4)

"""Layers on the canvas: painting on a layer, the stack's composite, undo of layer operations,
OpenRaster round trips and hostile files, the canvas surviving a restart, the layers panel."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor

from desktop_app.state import canvas_ora
from desktop_app.state.canvas import CanvasDocument
from desktop_app.state.canvas_layers import A, B, G, R
from tests.desktop_app.conftest import screenshot

W, H = 160, 100


def rgb(doc: CanvasDocument, x: int, y: int) -> tuple[int, int, int]:
    px = doc.image_array[y, x]
    return int(px[R]), int(px[G]), int(px[B])


def grey_doc() -> CanvasDocument:
    doc = CanvasDocument()
    doc.set_image(Image.new("RGB", (W, H), (128, 128, 128)), "grey.png")
    doc.undo_stack.clear()
    return doc


def fill_layer(doc: CanvasDocument, kind: str, rect, colour, opacity: float = 1.0):
    layer = doc.add_layer(kind)
    doc.brush.set_colour(QColor(*colour))
    doc.brush.set_opacity(opacity)
    doc.fill_rect(rect)
    doc.brush.set_opacity(1.0)
    return layer


@pytest.fixture
def panel(qtbot):
    from desktop_app.state.canvas_actions import CanvasActions
    from desktop_app.state.errors import ErrorReporter
    from desktop_app.state.params import GenerationParameters
    from desktop_app.state.status import EngineStatus
    from desktop_app.ui.canvas.panel import CanvasPanel

    doc = grey_doc()
    actions = CanvasActions(doc, GenerationParameters(), None, ErrorReporter(), EngineStatus(),
                            spawn=lambda coro: coro.close())
    widget = CanvasPanel(actions, GenerationParameters())
    qtbot.addWidget(widget)
    widget.resize(900, 520)
    widget.show()
    qtbot.waitExposed(widget)
    widget.view.setFocus()
    return widget


def drag(qtbot, view, points) -> None:
    vp = view.viewport()
    pos = [view.mapFromScene(QPointF(*p)) for p in points]
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos[0])
    for p in pos[1:]:
        qtbot.mouseMove(vp, p)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos[-1])


def test_painting_on_a_layer_colours_the_composite_and_leaves_the_mask_and_the_layer_below(panel, qtbot):
    doc, view = panel.doc, panel.view
    layer = doc.add_layer("image")
    assert doc.active_key == layer.key and panel.layers_panel.list.currentItem().data(Qt.ItemDataRole.UserRole + 1) == layer.key
    doc.brush.set_colour(QColor(220, 30, 40))
    doc.brush.set_size(16)
    doc.brush.set_hardness(1.0)
    drag(qtbot, view, [(20 + i * 6, 50) for i in range(15)])
    assert rgb(doc, 60, 50) == (220, 30, 40)  # under the stroke
    assert rgb(doc, 60, 10) == (128, 128, 128)  # away from it
    assert not doc.has_mask()
    background = doc.layers[0]
    assert (background.array[..., :3] == 128).all()  # the layer below is untouched
    # What the view shows is the composite too.
    shown = view.grab().toImage()
    assert shown.pixelColor(view.mapFromScene(QPointF(60, 50))) == QColor(220, 30, 40)
    doc.undo_stack.undo()
    assert rgb(doc, 60, 50) == (128, 128, 128) and not layer.array[..., A].any()
    doc.undo_stack.redo()
    assert rgb(doc, 60, 50) == (220, 30, 40)
    # The eraser takes the layer back to transparent: the grey shows through again.
    doc.brush.set_tool("eraser")
    drag(qtbot, view, [(56, 50), (64, 50)])
    assert rgb(doc, 60, 50) == (128, 128, 128)
    # The mask is still the mask: select it and the brush paints the mask, not the layer.
    doc.set_active("mask")
    doc.brush.set_tool("brush")
    drag(qtbot, view, [(100, 30), (120, 30)])
    assert doc.mask[30, 110] == 255 and rgb(doc, 110, 30) == (128, 128, 128)
    # A change to a layer that is not the active one (now drawn from the cached composite) shows too.
    doc.undo_stack.undo()  # the mask stroke
    doc.undo_stack.undo()  # the eraser: the red is back, on a layer below the active one (the mask)
    assert rgb(doc, 60, 50) == (220, 30, 40)

    def shown_at_60_50() -> QColor:
        return view.grab().toImage().pixelColor(view.mapFromScene(QPointF(60, 50)))

    qtbot.waitUntil(lambda: shown_at_60_50() == QColor(220, 30, 40), timeout=5_000)
    doc.set_active(layer.key)
    doc.set_layer_opacity(layer.key, 0.0)
    qtbot.waitUntil(lambda: shown_at_60_50() == QColor(128, 128, 128), timeout=5_000)


def test_fill_and_picker_tools(panel, qtbot):
    doc, view = panel.doc, panel.view
    doc.add_layer("image")
    doc.brush.set_colour(QColor(0, 0, 255))
    doc.fill_rect((10, 10, 40, 40))
    doc.brush.set_colour(QColor(0, 200, 0))
    doc.brush.set_tool("fill")
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.mapFromScene(QPointF(20, 20)))
    assert rgb(doc, 20, 20) == (0, 200, 0) and rgb(doc, 60, 60) == (128, 128, 128)  # only the connected square
    doc.brush.set_tool("picker")
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.mapFromScene(QPointF(80, 80)))
    assert doc.brush.colour == QColor(128, 128, 128)


def test_the_composite_follows_order_visibility_and_opacity_and_every_layer_op_undoes():
    doc = grey_doc()
    red = fill_layer(doc, "image", (0, 0, 80, 100), (255, 0, 0))
    blue = fill_layer(doc, "image", (40, 0, 120, 100), (0, 0, 255))
    assert [layer.key for layer in doc.layers[1:]] == [red.key, blue.key]
    assert rgb(doc, 60, 50) == (0, 0, 255) and rgb(doc, 20, 50) == (255, 0, 0) and rgb(doc, 140, 50) == (128, 128, 128)
    states = [doc.image_array.copy()]

    assert doc.move_layer(blue.key, 1)  # blue under red
    assert rgb(doc, 60, 50) == (255, 0, 0)
    states.append(doc.image_array.copy())
    assert doc.set_layer_visible(red.key, False)
    assert rgb(doc, 60, 50) == (0, 0, 255) and rgb(doc, 20, 50) == (128, 128, 128)
    states.append(doc.image_array.copy())
    assert doc.set_layer_opacity(blue.key, 0.3)
    assert doc.set_layer_opacity(blue.key, 0.5)  # merges with the step before: one undo step
    r, g, b = rgb(doc, 60, 50)
    assert abs(r - 64) <= 1 and abs(b - 191) <= 1
    states.append(doc.image_array.copy())
    assert doc.rename_layer(blue.key, "Sky")
    assert doc.layer(blue.key).name == "Sky"
    states.append(doc.image_array.copy())
    assert doc.delete_layer(blue.key)
    assert rgb(doc, 60, 50) == (128, 128, 128) and doc.layer(blue.key) is None
    states.append(doc.image_array.copy())
    count = doc.undo_stack.count()

    for expected in reversed(states[:-1]):
        doc.undo_stack.undo()
        assert np.array_equal(doc.image_array, expected)
    assert doc.layer(blue.key).name == "Image 3" and doc.layers[1:] == [red, blue] and blue.opacity == 1.0
    for expected in states[1:]:
        doc.undo_stack.redo()
        assert np.array_equal(doc.image_array, expected)
    assert doc.undo_stack.count() == count


def test_the_last_image_layer_cannot_be_deleted():
    doc = grey_doc()
    assert not doc.delete_layer(doc.layers[0].key) and len(doc.layers) == 1


def test_control_and_region_layers_hold_properties_stay_out_of_the_composite_and_are_exposed():
    doc = grey_doc()
    control = fill_layer(doc, "control", (10, 10, 50, 50), (255, 255, 255))
    region = fill_layer(doc, "region", (60, 20, 100, 80), (0, 255, 0))
    assert rgb(doc, 30, 30) == (128, 128, 128) and rgb(doc, 80, 50) == (128, 128, 128)  # not in what Generate uses
    assert doc.set_layer_props(control.key, control="canny")
    assert doc.set_layer_props(control.key, strength=0.7)
    assert doc.set_layer_props(control.key, start=0.1, end=0.8)
    assert doc.set_layer_props(region.key, prompt="a green door")
    with pytest.raises(ValueError):
        doc.set_layer_props(control.key, control="telepathy")
    guides = doc.guides()
    assert [g["kind"] for g in guides] == ["control", "region"]
    c, r = guides
    assert (c["control"], c["strength"], c["start"], c["end"]) == ("canny", 0.7, 0.1, 0.8)
    assert c["image"].getpixel((30, 30)) == (255, 255, 255) and c["image"].getpixel((5, 5)) == (0, 0, 0)
    assert r["prompt"] == "a green door" and r["mask"].getpixel((80, 50)) == 255 and r["mask"].getpixel((5, 5)) == 0
    doc.set_layer_visible(region.key, False)
    assert [g["kind"] for g in doc.guides()] == ["control"]  # hidden layers are not used
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.layer(region.key).props["prompt"] == ""
    doc.undo_stack.undo()
    assert doc.layer(control.key).props["start"] == 0.0 and doc.layer(control.key).props["end"] == 1.0


def test_accepting_a_result_and_extending_keep_working_with_layers():
    doc = grey_doc()
    fill_layer(doc, "image", (0, 0, 40, 40), (255, 0, 0))
    doc.set_active("mask")
    doc.extend(0, 0, 16, 0)
    assert (doc.width, doc.height) == (W + 16, H) and all(layer.width == W + 16 for layer in doc.layers)
    assert rgb(doc, 10, 10) == (255, 0, 0) and doc.mask[50, W + 8] == 255
    doc.undo_stack.undo()
    assert (doc.width, doc.height) == (W, H) and rgb(doc, 10, 10) == (255, 0, 0)


def layered_doc() -> CanvasDocument:
    doc = grey_doc()
    rng = np.random.default_rng(3)
    paint = fill_layer(doc, "image", (5, 5, 90, 60), (250, 120, 10), opacity=0.6)  # semi-transparent pixels
    paint.array[70:90, 100:150] = 0
    soft = rng.integers(0, 256, (20, 50), dtype=np.uint8)  # every alpha value, premultiplied colour
    paint.array[70:90, 100:150, A] = soft
    for ch in (R, G, B):
        paint.array[70:90, 100:150, ch] = (soft.astype(np.uint16) * rng.integers(0, 256, (20, 50)) // 255).astype(np.uint8)
    control = fill_layer(doc, "control", (20, 20, 60, 60), (255, 255, 255))
    doc.set_layer_props(control.key, control="depth", strength=0.45, start=0.2, end=0.9)
    region = fill_layer(doc, "region", (100, 10, 150, 90), (0, 200, 255))
    doc.set_layer_props(region.key, prompt="a window with \"quotes\" & <brackets>")
    doc.set_layer_opacity(region.key, 0.4)
    doc.set_layer_visible(control.key, False)
    doc.rename_layer(paint.key, "Sketch ✎")
    doc.set_active("mask")
    doc.fill_rect((30, 30, 70, 70))
    doc.set_active(control.key)
    return doc


def test_ora_round_trip_keeps_pixels_properties_and_mask_and_is_a_proper_openraster(tmp_path):
    doc = layered_doc()
    path = tmp_path / "canvas.ora"
    canvas_ora.write(path, canvas_ora.snapshot(doc))
    with zipfile.ZipFile(path) as zf:
        first = zf.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype") == b"image/openraster"
        names = set(zf.namelist())
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= names
        assert sum(n.startswith("data/") and n.endswith(".png") for n in names) == len(doc.layers) + 1  # + the mask
        with Image.open(io.BytesIO(zf.read("Thumbnails/thumbnail.png"))) as thumb:
            assert max(thumb.size) <= 256
        with Image.open(io.BytesIO(zf.read("mergedimage.png"))) as merged:
            assert merged.size == (W, H)
        stack = zf.read("stack.xml").decode()
        assert stack.index("Region") < stack.index("Background")  # top layer first

    again = CanvasDocument()
    layers, mask, active = canvas_ora.to_layers(canvas_ora.read(path))
    again.set_document(layers, mask, "canvas.ora", "Open canvas.ora", active)
    assert len(again.layers) == len(doc.layers)
    for a, b in zip(doc.layers, again.layers):
        assert (a.name, a.kind, a.visible, a.props) == (b.name, b.kind, b.visible, b.props)
        assert abs(a.opacity - b.opacity) < 1e-6
        assert np.array_equal(a.array, b.array), a.name  # bit-identical, semi-transparent pixels included
    assert np.array_equal(again.mask, doc.mask)
    assert np.array_equal(again.image_array, doc.image_array)
    assert again.active_layer.name == doc.active_layer.name


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "image/openraster")
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _png(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, (1, 2, 3, 255)).save(buf, "PNG")
    return buf.getvalue()


HOSTILE = {
    "not-a-zip": (b"this is not a zip at all", "not a zip"),
    "no-stack": (_zip({"data/a.png": _png()}), "stack.xml"),
    "bad-xml": (_zip({"stack.xml": b"<image w='8' h='8'><stack><layer"}), "broken"),
    "huge": (_zip({"stack.xml": b"<image w='100000' h='100000'><stack><layer src='data/a.png'/></stack></image>",
                   "data/a.png": _png()}), "refused"),
    "traversal": (_zip({"stack.xml": b"<image w='8' h='8'><stack><layer src='../../etc/passwd'/></stack></image>"}),
                  "unsafe"),
    "absolute": (_zip({"stack.xml": b"<image w='8' h='8'><stack><layer src='/etc/passwd'/></stack></image>"}),
                 "unsafe"),
    "missing": (_zip({"stack.xml": b"<image w='8' h='8'><stack><layer src='data/gone.png'/></stack></image>"}),
                "not in the archive"),
    "not-png": (_zip({"stack.xml": b"<image w='8' h='8'><stack><layer src='data/a.png'/></stack></image>",
                      "data/a.png": b"garbage"}), "not a readable image"),
    "entity-bomb": (_zip({"stack.xml": b'<?xml version="1.0"?><!DOCTYPE z [<!ENTITY a "aaaaaaaaaa">'
                          + b"".join(b'<!ENTITY a%d "%s">' % (i, (b"&a%d;" % (i - 1) if i > 1 else b"&a;") * 10)
                                     for i in range(1, 10))
                          + b']><image w="8" h="8"><stack><layer name="&a9;" src="data/a.png"/></stack></image>'}),
                    "broken"),
    "bad-number": (_zip({"stack.xml": b"<image w='8' h='eight'><stack/></image>"}), "bad height"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_ora_files_get_one_line(tmp_path, kind):
    data, words = HOSTILE[kind]
    path = tmp_path / "evil.ora"
    path.write_bytes(data)
    with pytest.raises(canvas_ora.OraError) as info:
        canvas_ora.read(path)
    message = str(info.value)
    assert "\n" not in message and "evil.ora" in message and words in message, message


def test_opening_a_hostile_ora_in_the_window_keeps_the_canvas(make_studio, data_dir, fake_engine, fake_model, qtbot,
                                                            tmp_path):
    studio = make_studio(data_dir, fake_engine)
    doc = studio.actions.document
    good = tmp_path / "good.ora"
    canvas_ora.write(good, canvas_ora.snapshot(layered_doc()))
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(good)
    assert [layer.kind for layer in doc.layers] == ["image", "image", "control", "region"]
    before = [layer.array.copy() for layer in doc.layers]
    bad = tmp_path / "bad.ora"
    bad.write_bytes(HOSTILE["traversal"][0])
    with qtbot.waitSignal(studio.reporter.error_reported, timeout=10_000) as blocker:
        studio.actions.canvas.open_file(bad)
    message = blocker.args[0].message
    assert "\n" not in message and "bad.ora" in message and "unsafe" in message
    assert all(np.array_equal(a, layer.array) for a, layer in zip(before, doc.layers))


def test_the_layered_canvas_survives_quit_and_restart(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    doc = studio.actions.document
    source = layered_doc()
    layers, mask, active = canvas_ora.to_layers(canvas_ora.snapshot(source))
    doc.set_document(layers, mask, "sketch", "Open sketch", active)
    doc.add_layer("image", "Late addition")
    doc.brush.set_colour(QColor(9, 99, 199))
    doc.fill_rect((0, 0, 10, 10))
    expected = [(layer.name, layer.kind, layer.visible, round(layer.opacity, 6), layer.props, layer.array.copy())
                for layer in doc.layers]
    composite, mask_before = doc.image_array.copy(), doc.mask.copy()
    studio.window.close()
    assert studio.is_shut_down

    again = make_studio(data_dir, fake_engine)
    restored = again.actions.document
    got = [(layer.name, layer.kind, layer.visible, round(layer.opacity, 6), layer.props, layer.array)
           for layer in restored.layers]
    assert [g[:5] for g in got] == [e[:5] for e in expected]
    assert all(np.array_equal(g[5], e[5]) for g, e in zip(got, expected))
    assert np.array_equal(restored.image_array, composite) and np.array_equal(restored.mask, mask_before)
    assert restored.active_layer is not None and restored.active_layer.name == "Late addition"
    assert "the canvas" in again.window.banner.message.text()


def test_the_layers_panel_edits_the_stack_and_looks_right(panel, qtbot):
    doc, lp = panel.doc, panel.layers_panel
    doc.brush.set_colour(QColor(240, 180, 20))
    lp.add_menu.actions()[0].trigger()  # Image layer
    doc.fill_rect((10, 10, 70, 60))
    lp.add_menu.actions()[1].trigger()  # Control layer
    doc.brush.set_colour(QColor(255, 255, 255))
    doc.brush.set_size(6)
    doc.begin_stroke(20, 80)
    doc.stroke_to(140, 20)
    doc.end_stroke()
    lp.control_combo.setCurrentIndex(lp.control_combo.findData("lineart"))
    lp.strength_spin.setValue(0.65)
    assert doc.active_layer.props["control"] == "lineart" and doc.active_layer.props["strength"] == 0.65
    lp.add_menu.actions()[2].trigger()  # Region layer
    doc.brush.set_colour(QColor(40, 200, 120))
    doc.fill_rect((90, 30, 150, 90))
    lp.prompt_edit.setText("a mossy stone wall")
    lp.prompt_edit.editingFinished.emit()
    assert doc.active_layer.props["prompt"] == "a mossy stone wall"
    assert lp.row_keys()[0] == "mask" and lp.row_keys()[1:] == [layer.key for layer in reversed(doc.layers)]

    # Up / down, hide (the check box), opacity, rename: each an undo step.
    region = doc.active_layer
    qtbot.mouseClick(lp.down_button, Qt.MouseButton.LeftButton)
    assert doc.index_of(region.key) == 2
    item = lp.list.item(lp.row_keys().index(region.key))
    item.setCheckState(Qt.CheckState.Unchecked)
    assert not region.visible
    lp.opacity_spin.setValue(35)
    assert abs(region.opacity - 0.35) < 1e-6
    item = lp.list.item(lp.row_keys().index(region.key))
    item.setText("Wall")
    assert region.name == "Wall"
    for _ in range(4):
        doc.undo_stack.undo()
    assert region.name != "Wall" and region.opacity == 0.6 and region.visible and doc.index_of(region.key) == 3
    doc.undo_stack.redo()
    doc.undo_stack.redo()

    screenshot(panel, "layers-panel.png")
    screenshot(lp, "layers-panel-close.png")
    # The shot shows the layers: the image layer's paint over the grey, the region (hidden) not.
    assert rgb(doc, 40, 30) == (240, 180, 20)


def test_edits_are_autosaved_and_a_crash_loses_only_the_last_seconds(make_studio, data_dir, fake_engine, fake_model,
                                                                     qtbot):
    import shutil

    studio = make_studio(data_dir, fake_engine)
    canvas = studio.actions.canvas
    path = canvas.autosave_path
    assert path is not None and path.parent == data_dir / "session"
    doc = studio.actions.document
    layers, mask, active = canvas_ora.to_layers(canvas_ora.snapshot(layered_doc()))
    doc.set_document(layers, mask, "sketch", "Open sketch", active)
    doc.add_layer("region", "Autosaved region")
    qtbot.waitUntil(path.is_file, timeout=15_000)  # a few seconds after the last edit, by itself
    qtbot.waitUntil(lambda: not canvas._autosaving, timeout=15_000)
    saved = path.read_bytes()
    expected = [(layer.name, layer.kind, layer.props, layer.array.copy()) for layer in doc.layers]
    studio.window.close()  # a normal quit: the session holds the canvas, the autosave is not needed
    assert not path.exists() and (data_dir / "session" / "session.json").is_file()

    # A crash: no session was written, only the autosave is there.
    shutil.rmtree(data_dir / "session")
    path.parent.mkdir()
    path.write_bytes(saved)
    again = make_studio(data_dir, fake_engine)
    restored = again.actions.document
    assert [(layer.name, layer.kind, layer.props) for layer in restored.layers] == [e[:3] for e in expected]
    assert all(np.array_equal(layer.array, e[3]) for layer, e in zip(restored.layers, expected))
    assert "the canvas" in again.window.banner.message.text()


def test_dragging_a_row_in_the_layers_panel_reorders_the_stack(panel, qtbot):
    from PySide6.QtCore import QModelIndex

    doc, lp = panel.doc, panel.layers_panel
    a = fill_layer(doc, "image", (0, 0, 80, 100), (255, 0, 0))
    b = fill_layer(doc, "image", (40, 0, 120, 100), (0, 0, 255))
    assert lp.row_keys() == ["mask", b.key, a.key, doc.layers[0].key]
    assert rgb(doc, 60, 50) == (0, 0, 255)
    # Drop the top layer (row 1) below the red one (before row 3), as a drag in the list does.
    assert lp.list.model().moveRows(QModelIndex(), 1, 1, QModelIndex(), 3)
    qtbot.waitUntil(lambda: doc.layers[1] is b)
    assert [layer.key for layer in doc.layers] == [doc.layers[0].key, b.key, a.key]
    assert lp.row_keys() == ["mask", a.key, b.key, doc.layers[0].key]
    assert rgb(doc, 60, 50) == (255, 0, 0)
    doc.undo_stack.undo()
    assert rgb(doc, 60, 50) == (0, 0, 255) and lp.row_keys()[1] == b.key


def test_export_writes_a_flattened_png_and_a_layered_ora(make_studio, data_dir, fake_engine, fake_model, qtbot,
                                                         tmp_path):
    studio = make_studio(data_dir, fake_engine)
    doc = studio.actions.document
    layers, mask, active = canvas_ora.to_layers(canvas_ora.snapshot(layered_doc()))
    doc.set_document(layers, mask, "sketch", "Open sketch", active)
    canvas = studio.actions.canvas
    png_task = canvas.export(tmp_path / "flat.png")
    qtbot.waitUntil(png_task.done, timeout=15_000)
    ora_task = canvas.export(tmp_path / "layers.ora")
    qtbot.waitUntil(ora_task.done, timeout=15_000)
    assert png_task.result() and ora_task.result()
    with Image.open(tmp_path / "flat.png") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(doc.image_pil()))
    data = canvas_ora.read(tmp_path / "layers.ora")
    assert [layer.kind for layer in data.layers] == [layer.kind for layer in doc.layers]
    assert "Saved the canvas as layers.ora" in studio.status.activity


def test_export_as_psd_keeps_every_layer_for_photoshop(make_studio, data_dir, fake_engine, fake_model, qtbot,
                                                       tmp_path):
    """The .psd (read back here with psd-tools, as Photoshop would see it, and with Pillow, as a viewer
    without layers does): the layers bottom first with their pixels, transparency, visibility and
    opacity, Easel's kinds in their names, the mask a hidden layer on top, the merged image the canvas."""
    from psd_tools import PSDImage

    from desktop_app.state.canvas_layers import premul_to_pil

    studio = make_studio(data_dir, fake_engine)
    doc = studio.actions.document
    layers, mask, active = canvas_ora.to_layers(canvas_ora.snapshot(layered_doc()))
    doc.set_document(layers, mask, "sketch", "Open sketch", active)
    task = studio.actions.canvas.export(tmp_path / "layers.psd")
    qtbot.waitUntil(task.done, timeout=15_000)
    assert task.result() and "Saved the canvas as layers.psd" in studio.status.activity

    psd = PSDImage.open(tmp_path / "layers.psd")
    assert psd.size == (doc.width, doc.height)
    names = [layer.name for layer in psd]
    assert names == ["Background", "Sketch ✎", "Control 1 (control: depth)",
                     'Region 1 (region: a window with "quotes" & <brackets>)', "Mask"], names
    assert [layer.visible for layer in psd] == [True, True, False, True, False]
    assert [layer.opacity for layer in psd] == [255, 255, 255, 102, 255]  # the region layer's 40 %
    for saved, layer in zip(psd, doc.layers):
        straight = np.asarray(premul_to_pil(layer.array))
        pixels = np.asarray(saved.topil().convert("RGBA"))
        opaque = straight[..., 3] > 0
        assert np.array_equal(pixels[..., 3], straight[..., 3])
        assert np.array_equal(pixels[opaque][:, :3], straight[opaque][:, :3])
    assert np.array_equal(np.asarray(psd[-1].topil().convert("L")), doc.mask)
    shown = np.asarray(canvas_ora.merged(canvas_ora.snapshot(doc)))  # the visible layers, as the stack shows them
    with Image.open(tmp_path / "layers.psd") as flat:  # the merged image, what a viewer without layers shows
        assert np.abs(np.asarray(flat.convert("RGBA")).astype(int) - shown.astype(int)).max() <= 1


def test_generate_from_the_canvas_uses_the_visible_image_layers_only(panel):
    from engine.api import GenerationRequest

    doc, actions = panel.doc, panel.canvas
    fill_layer(doc, "image", (0, 0, 80, 100), (255, 0, 0))
    hidden = fill_layer(doc, "image", (80, 0, 160, 100), (0, 255, 0))
    doc.set_layer_visible(hidden.key, False)
    fill_layer(doc, "control", (0, 0, 160, 50), (255, 255, 255))
    fill_layer(doc, "region", (0, 50, 160, 100), (0, 0, 255))
    actions.params.edit_mode = "img2img"
    request, job = actions.build_request(GenerationRequest(prompt="a test"))
    init = request.init_image
    assert init.getpixel((20, 20)) == (255, 0, 0) and init.getpixel((120, 20)) == (128, 128, 128)
    assert init.getpixel((120, 80)) == (128, 128, 128)  # neither the hidden layer nor control/region paint
    assert np.array_equal(job.source, doc.image_array)


def test_the_autosave_snapshot_encodes_only_layers_that_changed(tmp_path):
    doc = layered_doc()
    cache: dict = {}
    first = canvas_ora.snapshot(doc, raw=True, png_cache=cache)
    canvas_ora.write(tmp_path / "a.ora", first)
    assert len(cache) == len(doc.layers)
    doc.set_active(doc.layers[1].key)
    doc.brush.set_colour(QColor(1, 2, 3))
    doc.fill_rect((0, 0, 4, 4))
    second = canvas_ora.snapshot(doc, raw=True, png_cache=cache)
    assert [layer.png is not None for layer in second.layers] == [True, False, True, True]
    canvas_ora.write(tmp_path / "b.ora", second)
    layers, mask, active = canvas_ora.to_layers(canvas_ora.read(tmp_path / "b.ora"))
    assert all(np.array_equal(a.array, b.array) for a, b in zip(doc.layers, layers))
    assert np.array_equal(mask, doc.mask) and len(cache) == len(doc.layers)


def test_control_layers_become_the_requests_control_inputs_and_steer_the_engine(panel, tmp_path):
    """A painted scribble layer is the artist's strokes (binarised); an empty canny layer follows the
    picture (its edges); an empty depth layer is refused in one line; the real engine with a tiny
    ControlNet gives a different image with the canvas's control than without it."""
    from dataclasses import replace

    from engine import families
    from engine.api import GenerationRequest, InvalidRequest
    from engine.engine import Engine

    doc, actions = panel.doc, panel.canvas
    fill_layer(doc, "image", (40, 20, 120, 80), (255, 0, 0))  # a red block in the picture
    scribble = fill_layer(doc, "control", (10, 10, 30, 90), (60, 20, 20))  # dark strokes on a control layer
    doc.set_layer_props(scribble.key, control="scribble", strength=0.8, end=0.5)
    edges = doc.add_layer("control")
    doc.set_layer_props(edges.key, control="canny")
    hidden = doc.add_layer("control")
    doc.set_layer_visible(hidden.key, False)  # hidden layers do not steer
    controls = actions.controls()
    assert [(c.kind, c.preprocessor, c.strength, c.end) for c in controls] == [
        ("scribble", "scribble", 0.8, 0.5), ("canny", "canny", 1.0, 1.0)]
    strokes = np.asarray(controls[0].image.convert("L"))
    assert strokes[50, 20] == 255 and strokes[50, 80] == 0  # white strokes on black
    outline = np.asarray(controls[1].image.convert("L"))
    assert outline[50, 38:42].max() == 255 and outline[50, 80] == 0 and outline[5, 5] == 0  # the block's edge only

    depth = doc.add_layer("control")
    doc.set_layer_props(depth.key, control="depth")
    with pytest.raises(InvalidRequest) as caught:
        actions.controls()
    assert "\n" not in str(caught.value) and "depth control layer" in str(caught.value) and "empty" in str(caught.value)
    doc.delete_layer(depth.key)

    # Through the real engine: SD 1.5 with the tiny canny ControlNet given the canvas's canny layer.
    tiny = {}
    for name in ("sd15", "controlnet-sd15-canny"):
        _family, model = families.test_models()[name]
        tiny[name] = str(model.write(tmp_path / name, "diffusers", 0))
    doc.set_layer_visible(scribble.key, False)
    canny_only = tuple(replace(c, model=tiny["controlnet-sd15-canny"]) for c in actions.controls())
    assert [c.kind for c in canny_only] == ["canny"]
    actions.params.edit_mode = "img2img"
    base = GenerationRequest(prompt="a red block", model=tiny["sd15"], seed=3, steps=3, width=64, height=64)
    request, _job = actions.build_request(base)
    engine = Engine(device="cpu")
    plain = np.asarray(engine.generate(request).images[0]).astype(int)
    steered = engine.generate(request.replace(controls=canny_only))
    assert np.abs(np.asarray(steered.images[0]).astype(int) - plain).mean() > 0.5
    assert [c.kind for c in steered.request.controls] == ["canny"]

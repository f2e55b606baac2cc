"""The window opens on a fresh data folder, says what is missing, and persists its settings."""

from __future__ import annotations

import json

import pytest

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QPlainTextEdit,
                               QTableWidget)

from tests.desktop_app.conftest import screenshot


def test_window_opens_on_fresh_data_dir_with_first_run_panel(make_studio, data_dir, fake_engine):
    studio = make_studio(data_dir, fake_engine)
    w = studio.window
    assert w.isVisible()
    assert studio.bridge.state == "ready"
    assert w.status_widget.engine_label.text() == "Engine ready"
    assert "cpu" in w.status_widget.device_label.text()
    # No model anywhere: the first-run panel replaces the image, Generate is off and says why.
    assert w.center_stack.currentWidget() is w.first_run
    assert not w.prompt_panel.generate_button.isEnabled()
    assert "add a folder of models" in w.prompt_panel.blocked_label.text()
    assert not w.generate_action.isEnabled()
    assert (data_dir / "logs" / "easel.log").is_file()
    screenshot(w, "first-run.png")


def test_every_control_has_a_tooltip(make_studio, data_dir, fake_engine):
    studio = make_studio(data_dir, fake_engine)
    kinds = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit)
    missing = [
        f"{type(c).__name__} {c.objectName() or getattr(c, 'text', lambda: '')()}"
        for kind in kinds
        for c in studio.window.findChildren(kind)
        if c.isVisibleTo(studio.window) and not c.toolTip() and not c.objectName().startswith("qt_")
        and type(c).__name__ not in ("QScrollBar",) and c.parent() is not None
        and not (isinstance(c.parent(), (QComboBox, QAbstractSpinBox)))
    ]
    assert not missing, missing


def test_shortcuts_are_listed_in_help(make_studio, data_dir, fake_engine, qtbot):
    studio = make_studio(data_dir, fake_engine)
    keys = {k for k, _ in studio.window.shortcuts}
    for expected in ("Ctrl+Return or Ctrl+Enter", "Esc", "Ctrl+R", "F1"):
        assert expected in keys
    # No key does two things: a window-wide shortcut must not clash with another one, nor with one
    # that a panel (canvas, gallery, queue) takes while it has the focus (Qt would do neither).
    by_key: dict[str, list[tuple[str, bool]]] = {}
    for action in studio.window.findChildren(QAction):
        window_wide = action.shortcutContext() in (Qt.ShortcutContext.WindowShortcut, Qt.ShortcutContext.ApplicationShortcut)
        for key in action.shortcuts():
            by_key.setdefault(key.toString(), []).append((action.text(), window_wide))
    clashes = {k: v for k, v in by_key.items() if len(v) > 1 and any(wide for _, wide in v)}
    assert not clashes, clashes

    # F1 opens the list; every key that does something in this window is in it, next to what it does.
    window = studio.window
    qtbot.keyClick(window, Qt.Key.Key_F1)
    dialog = window.shortcuts_dialog
    assert dialog.isVisible() and dialog.windowTitle() == "Keyboard shortcuts"
    table = dialog.findChild(QTableWidget)
    rows = [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount())]
    assert all(keys and what for keys, what in rows)
    for row in (("F1", "List the keyboard shortcuts"), ("Ctrl+Return or Ctrl+Enter", "Generate, or queue if busy"),
                ("M", "Canvas: Show or hide the mask"), ("F", "Gallery: Favourite or unfavourite the selected images")):
        assert row in rows
    unlisted = []
    for action in window.findChildren(QAction):
        tip = action.toolTip()
        for key in action.shortcuts():
            text = key.toString(QKeySequence.SequenceFormat.NativeText)
            if not any(text in keys.split(" or ") and tip.startswith(what.removeprefix("Canvas: ").removeprefix("Gallery: "))
                       for keys, what in rows):
                unlisted.append((text, tip))
    assert not unlisted, unlisted
    dialog.close()


def test_engine_loads_after_the_window_is_shown(make_studio, data_dir, qtbot):
    """The engine is created on the engine thread, after show; until then Generate says why it waits."""
    import threading

    gate = threading.Event()
    created_on: list[str] = []

    def slow_factory():
        created_on.append(threading.current_thread().name)
        gate.wait(10)
        from tests.desktop_app.fakes import FakeEngine

        return FakeEngine()

    studio = make_studio(data_dir, engine_factory=slow_factory, wait_ready=False, wait_models=False)
    assert studio.window.isVisible()
    qtbot.waitUntil(lambda: bool(created_on), timeout=5000)
    assert studio.bridge.state == "starting"
    assert studio.window.status_widget.engine_label.text() == "Loading torch and diffusers…"
    assert "engine is starting" in studio.window.prompt_panel.blocked_label.text()
    gate.set()
    qtbot.waitUntil(lambda: studio.bridge.state == "ready", timeout=5000)
    assert created_on == ["easel-engine"]


def test_corrupt_settings_are_backed_up_and_replaced_with_a_notice(make_studio, data_dir, fake_engine):
    (data_dir / "settings.json").write_text('{"theme": "dark", "model_folders": [', encoding="utf-8")
    studio = make_studio(data_dir, fake_engine)
    backups = list(data_dir.glob("settings.corrupt-*.json"))
    assert len(backups) == 1 and backups[0].read_text().startswith('{"theme"')
    assert studio.window.banner.isVisible()
    assert "could not be read" in studio.window.banner.message.text()
    assert studio.settings.model_folders == []


def test_settings_survive_a_restart(make_studio, data_dir, fake_engine, fake_model, tmp_path, qtbot):
    extra = tmp_path / "more-models"
    extra.mkdir()
    studio = make_studio(data_dir, fake_engine)
    w = studio.window
    qtbot.keyClicks(w.prompt_panel.prompt_edit, "a lighthouse at dusk")
    w.prompt_panel.steps_spin.setValue(7)
    w.prompt_panel.sampler_combo.setCurrentText("DDIM")
    studio.params.seed_mode = "fixed"
    studio.params.seed = 4242
    studio.params.edit_mode, studio.params.strength = "inpaint", 0.4
    studio.actions.add_model_folder(str(extra))
    w.theme_requested.emit("light")
    w.resize(1000, 700)
    w.main_splitter.setSizes([310, 500, 190])
    sizes = w.main_splitter.sizes()
    w.close()
    assert studio.is_shut_down
    saved = json.loads((data_dir / "settings.json").read_text())
    assert saved["parameters"]["prompt"] == "a lighthouse at dusk"

    again = make_studio(data_dir, fake_engine)
    p = again.params
    assert (p.prompt, p.steps, p.sampler, p.seed_mode, p.seed) == ("a lighthouse at dusk", 7, "DDIM", "fixed", 4242)
    # The strength is a preference; the edit mode is not: the canvas it edits did not survive either.
    assert (p.strength, p.edit_mode) == (0.4, "txt2img") and again.actions.generate_enabled
    assert again.window.prompt_panel.prompt_edit.toPlainText() == "a lighthouse at dusk"
    assert again.window.prompt_panel.seed_edit.text() == "4242"
    assert again.settings.model_folders == [str(extra)]
    assert again.settings.theme == "light" and again.theme == "light"
    assert again.window.size().width() == 1000
    assert again.window.main_splitter.sizes() == sizes
    assert again.params.model == str(fake_model)


def test_the_models_dock_is_built_when_first_shown_and_reopens_after_a_restart(make_studio, data_dir, fake_engine,
                                                                               fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    w = studio.window
    assert w.models_dock.widget() is None  # not built for a window that does not show it
    w.show_models()
    qtbot.waitUntil(w.models_dock.isVisible, timeout=5000)
    assert w.models_dock.widget() is w.models_panel
    w.close()
    again = make_studio(data_dir, fake_engine)
    qtbot.waitUntil(lambda: again.window.models_dock.isVisible() and again.window.models_dock.widget() is not None,
                    timeout=5000)
    assert again.window.models_dock.widget() is again.window.models_panel


def test_ctrl_shift_m_shows_and_hides_the_models_dock(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    w = studio.window
    w.activateWindow()
    qtbot.keyClick(w, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(w.models_dock.isVisible, timeout=5000)
    qtbot.keyClick(w, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: not w.models_dock.isVisible(), timeout=5000)


def test_adding_a_folder_says_what_was_found_and_the_focus_goes_to_the_prompt(make_studio, data_dir, fake_engine,
                                                                              qtbot, tmp_path):
    from tests.desktop_app.fakes import make_fake_model

    studio = make_studio(data_dir, fake_engine)
    w = studio.window
    assert w.center_stack.currentWidget() is w.first_run
    w.first_run.demo_button.setFocus()
    folder = tmp_path / "my models"
    make_fake_model(folder / "one.safetensors")
    task = studio.actions.add_model_folder(str(folder))
    qtbot.waitUntil(task.done, timeout=10_000)
    qtbot.waitUntil(lambda: "Added my models: 1 model file (1 usable)." == studio.status.activity, timeout=5000)
    assert w.status_widget.activity_label.text() == studio.status.activity
    assert w.center_stack.currentWidget() is w.canvas_panel
    assert QApplication.focusWidget() is w.prompt_panel.prompt_edit  # not the brush-size box
    empty = tmp_path / "empty"
    empty.mkdir()
    task = studio.actions.add_model_folder(str(empty))
    qtbot.waitUntil(task.done, timeout=10_000)
    qtbot.waitUntil(lambda: studio.status.activity == "Added empty: no model files.", timeout=5000)


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_the_layout_fits_the_window_and_long_texts_never_grow_it(make_studio, data_dir, fake_engine, qtbot, size):
    from PySide6.QtWidgets import QToolBar

    from tests.desktop_app.fakes import make_fake_model

    make_fake_model(data_dir / "models" / "a-rather-long-model-file-name-v2-final-pruned-emaonly.safetensors")
    studio = make_studio(data_dir, fake_engine)
    w = studio.window
    w.resize(*size)
    qtbot.waitUntil(lambda: w.width() == size[0], timeout=5000)
    studio.status.set_activity("Restored the settings of a very long file name from another tool.png (made with A1111). " * 4)
    w.canvas_panel.set_caption("A long caption " * 30)
    QApplication.processEvents()
    assert (w.width(), w.height()) == size  # the window did not grow
    # Every prompt-panel control is inside the visible panel: no sideways scrolling hides one.
    panel, scroll = w.prompt_panel, w.prompt_scroll
    assert panel.width() <= scroll.viewport().width()
    for control in (panel.add_folder_button, panel.reuse_seed_button, panel.height_spin, panel.memory_combo,
                    panel.hires_check, panel.generate_button):
        right = control.mapTo(panel, control.rect().topRight()).x()
        assert right < scroll.viewport().width(), control
    bottom = panel.generate_button.mapTo(scroll.viewport(), panel.generate_button.rect().bottomLeft()).y()
    assert bottom <= scroll.viewport().height()  # Generate is on screen without scrolling (hires fix off)
    studio.params.hires = True  # its settings appear, and fit the width too
    QApplication.processEvents()
    for control in (panel.hires_scale_spin, panel.upscaler_combo, panel.hires_steps_spin, panel.hires_strength_spin):
        assert control.isVisible() and control.mapTo(panel, control.rect().topRight()).x() < scroll.viewport().width()
    studio.params.hires = False
    QApplication.processEvents()
    # The canvas tool bars show every button: nothing folded behind ».
    for bar in w.canvas_panel.findChildren(QToolBar):
        for action in bar.actions():
            widget = bar.widgetForAction(action)
            if widget is not None and action.isVisible():
                assert widget.isVisible(), action.text() or widget
    assert all(w.canvas_panel.toolbar.widgetForAction(w.canvas_panel.actions_by_name[name]).isVisible()
               for name in ("extend", "variations", "upscale"))
    settings = w.canvas_panel.edit_settings
    assert all(c.isVisible() for c in settings.findChildren(QAbstractSpinBox))  # Seam blur too
    screenshot(w, f"layout-{size[0]}.png")


def test_the_help_list_is_read_without_scrolling_sideways(make_studio, data_dir, fake_engine, qtbot):
    from PySide6.QtWidgets import QTableWidget

    studio = make_studio(data_dir, fake_engine)
    studio.window.show_shortcuts()
    dialog = studio.window.shortcuts_dialog
    table = dialog.findChild(QTableWidget)
    QApplication.processEvents()
    assert table.horizontalHeader().length() <= table.viewport().width()
    longest = max(range(table.rowCount()), key=lambda r: len(table.item(r, 1).text()))
    assert table.rowHeight(longest) >= table.rowHeight(0)  # a long description wraps instead of being cut
    screenshot(dialog, "help.png")
    dialog.close()


def test_size_fields_offer_only_valid_sizes_and_say_when_a_typed_one_is_brought_in(make_studio, data_dir, fake_engine,
                                                                                 fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    panel = studio.window.prompt_panel
    assert "Size 64–4096, multiples of 8 px" in panel.range_hint.text()
    assert "steps 1–150" in panel.range_hint.text() and "batch 1–64" in panel.range_hint.text()

    def type_into(spin, text):
        spin.setFocus()
        spin.lineEdit().selectAll()
        qtbot.keyClicks(spin.lineEdit(), text)
        qtbot.keyClick(spin.lineEdit(), Qt.Key.Key_Return)

    type_into(panel.width_spin, "999")
    assert studio.params.width == 1000 and panel.width_spin.text() == "1000 px"
    assert panel.range_hint.text().startswith("Width 999 is not a multiple of 8: using 1000.")
    assert studio.actions.generate() is not None  # the size shown is the size made: no refusal later
    type_into(panel.height_spin, "3")
    assert studio.params.height == 64 and panel.height_spin.text() == "64 px"
    assert panel.range_hint.text().startswith("Height 3 is outside 64–4096, multiples of 8: using 64.")
    type_into(panel.batch_spin, "0")
    assert studio.params.batch_count == 1 and panel.range_hint.text().startswith("Batch 0 is outside 1–64: using 1.")
    type_into(panel.batch_spin, "500")
    assert studio.params.batch_count == 64 and panel.batch_spin.text() == "64"
    assert panel.range_hint.text().startswith("Batch 500 is outside 1–64: using 64.")

"""Quit with work in progress asks; the queue and the canvas come back at the next start."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage

from tests.desktop_app.conftest import screenshot
from tests.desktop_app.fakes import FakeEngine


def _setup(studio, prompt, steps=4):
    p = studio.params
    p.prompt, p.steps, p.width, p.height, p.batch_count = prompt, steps, 64, 64, 1
    p.seed_mode, p.seed = "fixed", 5


def test_quit_with_jobs_and_an_edited_canvas_asks_and_the_next_start_restores_them(
        make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    fake_engine.hold_at_step = 1
    _setup(studio, "running one")
    studio.actions.generate()
    _setup(studio, "waiting one")
    studio.actions.generate()
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    # A pasted canvas with a mask painted on it: in no file.
    image = QImage(96, 64, QImage.Format.Format_RGB32)
    image.fill(0x3366AA)
    assert studio.actions.canvas.paste(image)
    doc = studio.actions.document
    doc.fill_rect((10, 10, 40, 40))
    canvas_before, mask_before = doc.image_array.copy(), doc.mask.copy()
    asked = []

    def ask():
        asked.append(studio.actions.work_in_progress())
        return "keep"

    studio.window.ask_quit = ask
    studio.window.close()
    assert studio.is_shut_down
    assert len(asked) == 1 and asked[0].jobs == 2 and asked[0].canvas_edited
    assert "2 jobs in the queue" in asked[0].describe()

    engine = FakeEngine()
    again = make_studio(data_dir, engine)
    doc = again.actions.document
    assert np.array_equal(doc.image_array[..., :3], canvas_before[..., :3]) and np.array_equal(doc.mask, mask_before)
    assert again.params.edit_mode == "inpaint"
    assert "Restored from the last session: 2 jobs (queued again) and the canvas" in again.window.banner.message.text()
    qtbot.waitUntil(lambda: not again.queue.busy, timeout=10_000)
    assert [r.prompt for r in engine.calls] == ["running one", "waiting one"]
    assert [j.status.value for j in again.queue.history] == ["done", "done"]
    screenshot(again.window, "session-restored.png")
    # Restored once: a later start begins empty.
    assert not (data_dir / "session" / "session.json").exists()


def test_the_quit_question_can_discard_or_cancel(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine, ask_quit=True)
    fake_engine.hold_at_step = 1
    _setup(studio, "a job")
    studio.actions.generate()
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    window = studio.window

    def click(label):
        box = window.quit_box
        button = next(b for b in box.buttons() if b.text().replace("&", "") == label)
        button.click()

    QTimer.singleShot(0, lambda: click("Cancel"))
    window.close()
    assert not studio.is_shut_down and studio.queue.running is not None  # Cancel: nothing happened
    assert "1 job in the queue" in window.quit_box.text()
    QTimer.singleShot(0, lambda: click("Discard them and quit"))
    window.close()
    assert studio.is_shut_down and not (data_dir / "session" / "session.json").exists()


def test_a_canvas_just_opened_from_a_file_quits_without_asking(make_studio, data_dir, fake_engine, fake_model, qtbot,
                                                               tmp_path):
    studio = make_studio(data_dir, fake_engine, ask_quit=True)
    Image.new("RGB", (64, 64), "teal").save(tmp_path / "a.png")
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(tmp_path / "a.png")
    assert not studio.actions.work_in_progress().any
    studio.window.ask_quit = lambda: (_ for _ in ()).throw(AssertionError("asked"))
    studio.window.close()
    assert studio.is_shut_down

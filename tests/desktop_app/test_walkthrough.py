"""A day of an artist's work through the real window and the real engine thread, with tiny models.

First start, the demo model, generate, a queue, cancel, quit mid-job, restart (the queue and the
canvas come back), gallery delete, canvas inpaint / accept / outpaint, upscale with the GAN demo
upscaler. A screenshot of each step goes to build/screenshots/walkthrough/.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.desktop_app.conftest import screenshot

def shot(studio, name: str) -> None:
    screenshot(studio.window, f"walkthrough/{name}.png")


def wait_progress(qtbot, studio, step: int = 1) -> None:
    stepped = threading.Event()

    def on_progress(_job, info) -> None:
        if info.step >= step:
            stepped.set()

    studio.queue.job_progressed.connect(on_progress)
    try:
        qtbot.waitUntil(stepped.is_set, timeout=60_000)
    finally:
        studio.queue.job_progressed.disconnect(on_progress)


def test_a_day_of_work(make_studio, data_dir, qtbot):
    # 1. First start: no model anywhere, the first-run panel says what to do.
    studio = make_studio(data_dir)  # the real engine on its thread
    w = studio.window
    w.resize(1280, 800)
    assert studio.bridge.state == "ready", studio.bridge.error
    assert w.center_stack.currentWidget() is w.first_run
    shot(studio, "01-first-start")

    # 2. The demo model: made on the engine thread, picked, the focus back in the prompt.
    with qtbot.waitSignal(studio.actions.demo_model_made, timeout=120_000):
        w.first_run.demo_button.click()
    qtbot.waitUntil(lambda: studio.actions.generate_enabled, timeout=30_000)
    assert w.center_stack.currentWidget() is w.canvas_panel
    assert QApplication.focusWidget() is w.prompt_panel.prompt_edit
    shot(studio, "02-demo-model")

    # 3. Generate one image.
    p = studio.params
    qtbot.keyClicks(w.prompt_panel.prompt_edit, "a lighthouse")
    p.width, p.height, p.steps, p.seed_mode, p.seed = 64, 64, 2, "fixed", 1
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        qtbot.keyClick(w, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert studio.gallery.model.rowCount() == 1
    shot(studio, "03-generated")

    # 4. A queue: a long job runs while two more wait.
    p.steps = 150
    long_job = studio.actions.generate()
    p.steps, p.seed = 2, 2
    waiting = [studio.actions.generate(), studio.actions.generate()]
    wait_progress(qtbot, studio)
    assert "(2 waiting)" in w.queue_panel.title.text()
    shot(studio, "04-queue")

    # 5. Cancel: Esc says "Cancelling…" at once; the job stops and stays listed as cancelled.
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=30_000):
        qtbot.keyClick(w, Qt.Key.Key_Escape)
        assert w.progress.bar.format() == "Cancelling…" or long_job.status.value == "cancelled"
    qtbot.waitUntil(lambda: all(j.status.value == "done" for j in waiting), timeout=120_000)
    assert studio.gallery.model.rowCount() == 3
    assert any(w.queue_panel.list.item(r).text().startswith("✕ Cancelled")
               for r in range(w.queue_panel.list.count()))
    shot(studio, "05-cancelled")

    # 6. Quit mid-job, keeping the job (the quit question's "Quit").
    p.steps, p.seed = 150, 9
    studio.actions.generate()
    wait_progress(qtbot, studio)
    shot(studio, "06-quit-mid-job")
    w.close()
    assert studio.is_shut_down  # within QUIT_WAIT_SECONDS, whatever the engine thread is doing
    # On a loaded machine one tiny step can outlast that wait: the thread then ends by itself.
    qtbot.waitUntil(lambda: not studio.bridge.engine_thread_alive, timeout=60_000)

    # 7. Restart: the job comes back and runs; cancel it again to move on.
    studio = make_studio(data_dir)
    w, p = studio.window, studio.params
    w.resize(1280, 800)
    assert p.steps == 150 and p.prompt == "a lighthouse"  # the settings came back too
    assert "Restored from the last session: 1 job" in w.banner.message.text()
    running = studio.queue.running or studio.queue.pending[0]
    assert running.request.steps == 150 and running.request.seed == 9
    wait_progress(qtbot, studio)
    shot(studio, "07-restarted")
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=30_000):
        studio.actions.cancel_current()
    qtbot.waitUntil(lambda: studio.gallery.model.rowCount() == 3, timeout=10_000)

    # 8. Gallery delete: the next image is selected and shown.
    view = w.gallery_panel.view
    view.setFocus()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(view.model().index(0)).center())
    second = studio.gallery.model.entry_at(1)
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: studio.gallery.model.rowCount() == 2, timeout=10_000)
    assert studio.gallery.current.id == second.id
    assert [e.id for e in w.gallery_panel.selected()] == [second.id]
    shot(studio, "08-gallery-delete")

    # 9. Canvas: inpaint a region, accept (the mask goes), then outpaint a strip and accept.
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.edit_in_canvas(studio.gallery.current, "inpaint")
    doc = studio.actions.document
    doc.fill_rect((16, 16, 48, 48))
    p.only_masked, p.steps = False, 2
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        studio.actions.generate()
    assert doc.candidates
    shot(studio, "09-inpaint-candidate")
    w.canvas_panel.candidate_bar.accept_button.click()
    assert not doc.candidates and not doc.has_mask()
    assert studio.actions.canvas.extend(0, 0, 32, 0, "blur")
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        studio.actions.generate()
    w.canvas_panel.candidate_bar.accept_button.click()
    assert (doc.width, doc.height) == (96, 64) and not doc.has_mask()
    shot(studio, "10-outpainted")

    # 11. Upscale with the GAN demo: `easel make-test-model --family realesrgan-compact` in the models
    # folder, listed as an upscaler after a rescan, run through the engine from Image › Upscale….
    from engine.cli import main

    demo = studio.actions.demo_models_dir / "realesrgan-compact.safetensors"
    assert main(["make-test-model", str(demo), "--family", "realesrgan-compact"]) == 0
    studio.actions.rescan_models()
    qtbot.waitUntil(lambda: any(u.path == str(demo) for u in studio.actions.images.upscalers()), timeout=30_000)
    source = studio.gallery.model.entry_at(0)
    dialog = w.show_upscale_dialog(studio.actions.images.source_for(source))
    index = dialog.model_combo.findData(str(demo))
    assert index >= 0 and "Upscaler (GAN)" in dialog.model_combo.itemText(index)
    dialog.model_combo.setCurrentIndex(index)
    shot(studio, "11-upscale-dialog")
    with qtbot.waitSignal(studio.actions.images.upscaled, timeout=120_000) as done:
        dialog.upscale_button.click()
    shown = done.args[0]
    assert (shown.after.width(), shown.after.height()) == (source.width * 4, source.height * 4)
    shot(studio, "12-upscaled")

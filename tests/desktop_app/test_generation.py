"""Generate, preview, cancel, queue, failures and closing mid-run, on the fake engine."""

from __future__ import annotations

import threading

import pytest

from PIL import Image
from PySide6.QtCore import Qt

from desktop_app.state.step_times import StepTimes

from tests.desktop_app.conftest import screenshot
from tests.desktop_app.fakes import colour_for, make_fake_model


def _setup(studio, prompt="a red barn", steps=6, seed=7, batch=1):
    p = studio.params
    p.prompt, p.steps, p.width, p.height, p.batch_count = prompt, steps, 64, 64, batch
    p.seed_mode, p.seed = "fixed", seed


def test_ctrl_enter_generates_with_previews_and_saves_a_png(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    w = studio.window
    assert studio.params.model == str(fake_model)
    assert w.center_stack.currentWidget() is w.canvas_panel
    _setup(studio, steps=6, seed=7)
    previews, progress = [], []
    studio.queue.preview_changed.connect(previews.append)
    studio.queue.job_progressed.connect(lambda job, info: progress.append(info))

    w.prompt_panel.prompt_edit.setFocus()
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        qtbot.keyClick(w.prompt_panel.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    assert w.prompt_panel.prompt_edit.toPlainText() == "a red barn"  # Ctrl+Enter did not add a newline
    assert previews, "no preview reached the GUI"
    assert progress and progress[-1].step == 6 and progress[-1].total == 6
    assert fake_engine.threads == {"easel-engine"}
    # The result is on top of the gallery, shown in the view, and on disk with metadata.
    assert studio.gallery.model.rowCount() == 1
    item = studio.gallery.current
    assert item.seed == 7 and studio.gallery.model.entry_at(0) == item
    qtbot.waitUntil(lambda: w.canvas_panel.pixmap is not None and not w.canvas_panel.is_preview, timeout=5000)
    assert w.canvas_panel.pixmap.toImage().pixelColor(10, 10).getRgb()[:3] == colour_for(7)
    path = studio.gallery.absolute(item)
    assert path.parent == data_dir / "outputs"
    with Image.open(path) as png:
        assert "a red barn" in png.text["parameters"] and "Seed: 7" in png.text["parameters"]
    assert "Last:" in w.status_widget.time_label.text() and "—" not in w.status_widget.time_label.text()
    assert "fake-model" in w.status_widget.model_label.text()
    assert w.progress.bar.format() == "Done"
    screenshot(w, "idle-with-result.png")


def test_clicking_a_result_shows_it(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _setup(studio, steps=2, seed=1, batch=3)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    view = studio.window.gallery_panel.view
    assert view.model().rowCount() == 3  # newest (seed 3) first
    rect = view.visualRect(view.model().index(2))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert studio.gallery.current.seed == 1

    def shown():
        pixmap = studio.window.canvas_panel.pixmap
        return pixmap is not None and pixmap.toImage().pixelColor(5, 5).getRgb()[:3] == colour_for(1)

    qtbot.waitUntil(shown, timeout=5000)
    studio.actions.reuse_last_seed()
    assert studio.params.seed_mode == "fixed"


def test_escape_cancels_mid_run_within_one_step_and_leaves_no_result(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _setup(studio, steps=20)
    fake_engine.hold_at_step = 3
    job = studio.actions.generate()
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    qtbot.waitUntil(lambda: studio.window.progress.bar.format().startswith("Step"), timeout=5000)
    assert studio.window.progress.cancel_button.isEnabled()
    screenshot(studio.window, "generating.png")
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=5000):
        qtbot.keyClick(studio.window, Qt.Key.Key_Escape)
    assert job.status.value == "cancelled"
    assert fake_engine.steps_run == 3  # stopped at the step it was on: not one step more
    assert studio.gallery.model.rowCount() == 0
    assert list((data_dir / "outputs").glob("*.png")) == []
    assert studio.window.progress.bar.format() == "Cancelled"
    assert not studio.window.banner.isVisible()  # a cancel is not an error


def test_a_cancel_after_the_last_step_still_leaves_no_file(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _setup(studio, steps=3)
    run = fake_engine.generate

    def generate_then_click_cancel(request, on_progress=None, cancel=None):
        result = run(request, on_progress=on_progress, cancel=cancel)
        cancel.set()  # the click lands after the last step, before the image is saved
        return result

    fake_engine.generate = generate_then_click_cancel
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=10_000):
        job = studio.actions.generate()
    assert job.status.value == "cancelled"
    assert list((data_dir / "outputs").glob("*.png")) == [] and studio.gallery.model.rowCount() == 0
    # The queue goes on with the next job as usual.
    fake_engine.generate = run
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    assert len(list((data_dir / "outputs").glob("*.png"))) == 1


def test_queue_runs_in_order_and_a_cancelled_pending_job_never_runs(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    fake_engine.hold_at_step = 1
    jobs = []
    for prompt in ("first", "second", "third", "fourth"):
        _setup(studio, prompt=prompt, steps=2)
        jobs.append(studio.actions.generate())
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    panel = studio.window.queue_panel
    assert panel.list.count() == 4
    assert panel.list.item(0).text().startswith("▶ first")
    assert "(3 waiting)" in panel.title.text()
    # Cancel "third" from the panel, move "fourth" ahead of "second".
    panel.list.setCurrentRow(2)
    panel.cancel_button.click()
    assert jobs[2].status.value == "cancelled"
    panel.list.setCurrentRow(2)  # "fourth" is now row 2
    panel.up_button.click()
    assert [j.request.prompt for j in studio.queue.pending] == ["fourth", "second"]
    screenshot(studio.window, "queue.png")

    fake_engine.hold_at_step = None
    fake_engine.release()
    qtbot.waitUntil(lambda: not studio.queue.busy, timeout=10_000)
    assert [r.prompt for r in fake_engine.calls] == ["first", "fourth", "second"]
    assert [j.status.value for j in jobs] == ["done", "done", "cancelled", "done"]
    assert [studio.gallery.model.entry_at(r).prompt for r in range(3)] == ["second", "fourth", "first"]
    assert [panel.list.item(r).text()[:2] for r in range(panel.list.count())] == ["✓ ", "✓ ", "✓ ", "✕ "]


def test_clear_pending_keeps_the_running_job(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    fake_engine.hold_at_step = 1
    _setup(studio, steps=2)
    running = studio.actions.generate()
    others = [studio.actions.generate() for _ in range(2)]
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    studio.window.queue_panel.clear_button.click()
    assert all(j.status.value == "cancelled" for j in others)
    fake_engine.release()
    qtbot.waitUntil(lambda: running.status.value == "done", timeout=10_000)
    assert len(fake_engine.calls) == 1


def test_a_bad_model_shows_the_banner_and_the_app_keeps_working(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    bad = make_fake_model(data_dir / "elsewhere" / "broken.safetensors", bad=True)
    _setup(studio, steps=2)
    studio.params.model = str(bad)
    assert studio.actions.generate_enabled  # not in the catalog, so the engine decides
    with qtbot.waitSignal(studio.queue.job_failed, timeout=10_000):
        studio.actions.generate()
    banner = studio.window.banner
    assert banner.isVisible()
    assert banner.message.text().startswith("The model could not be used:")
    assert "broken.safetensors" in banner.message.text()
    assert not banner.details.isVisible()
    banner.details_button.click()
    assert banner.details.isVisible() and "broken.safetensors" in banner.details.toPlainText()
    screenshot(studio.window, "error.png")
    log_text = (data_dir / "logs" / "easel.log").read_text()
    assert "The model could not be used" in log_text
    # The app keeps working: the good model generates.
    studio.params.model = str(fake_model)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    assert studio.gallery.model.rowCount() == 1
    banner.close_button.click()
    assert not banner.isVisible()


def test_an_unexpected_engine_error_becomes_a_banner_not_a_crash(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)

    def explode(step):
        if step == 2:
            raise RuntimeError("simulated driver fault")

    fake_engine.on_step = explode
    _setup(studio, steps=4)
    with qtbot.waitSignal(studio.queue.job_failed, timeout=10_000):
        studio.actions.generate()
    assert "failed unexpectedly" in studio.window.banner.message.text()
    assert "simulated driver fault" in studio.window.banner.details.toPlainText()
    fake_engine.on_step = None
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()


def test_closing_the_window_while_a_job_runs_stops_it_cleanly(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    fake_engine.hold_at_step = 2
    _setup(studio, steps=50)
    job = studio.actions.generate()
    pending = studio.actions.generate()
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    studio.window.ask_quit = lambda: "discard"  # asked because jobs would stop: see test_session.py
    studio.window.close()
    assert studio.is_shut_down and studio.bridge.state == "closed"
    assert not any(t.name.startswith("easel-") for t in threading.enumerate())
    assert fake_engine.steps_run == 2 and fake_engine.unloaded
    assert job.status.value == "cancelled" and pending.status.value == "cancelled"
    assert list((data_dir / "outputs").glob("*.png")) == []
    assert (data_dir / "settings.json").is_file()


def test_invalid_size_is_reported_not_run(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _setup(studio)
    studio.params.width = 100  # not a multiple of 8
    assert studio.actions.generate() is None
    assert "width" in studio.window.banner.message.text()
    assert fake_engine.calls == []


def test_cancel_says_cancelling_at_once_and_the_cancelled_job_stays_listed(make_studio, data_dir, fake_engine,
                                                                           fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _setup(studio, steps=20)
    fake_engine.hold_at_step, fake_engine.stuck = 3, True  # a long step that has not reached a cancel check
    job = studio.actions.generate()
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    qtbot.keyClick(studio.window, Qt.Key.Key_Escape)
    # Before the engine notices: the window already says so, and Cancel cannot be pressed again.
    assert job.status.value == "running"
    assert studio.window.progress.bar.format() == "Cancelling…"
    assert not studio.window.progress.cancel_button.isEnabled()
    assert studio.window.queue_panel.list.item(0).text().startswith("✕ Cancelling…")
    assert studio.status.activity.startswith("Cancelling")
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=5000):
        fake_engine.release()
    # The cancelled job is still in the queue list (greyed), saying where it stopped.
    panel = studio.window.queue_panel
    assert panel.list.count() == 1 and panel.list.item(0).text() == f"✕ Cancelled at step 3 · {job.title}"
    assert not panel.list.item(0).flags() & Qt.ItemFlag.ItemIsSelectable
    screenshot(studio.window, "cancelled.png")


def test_quit_while_the_engine_is_stuck_in_a_step_does_not_wait_for_it(make_studio, data_dir, fake_engine,
                                                                        fake_model, qtbot, monkeypatch):
    from desktop_app import bridge as bridge_module

    monkeypatch.setattr(bridge_module, "QUIT_WAIT_SECONDS", 0.2)
    studio = make_studio(data_dir, fake_engine)
    _setup(studio, steps=20)
    fake_engine.hold_at_step, fake_engine.stuck = 2, True  # only release() ends this step
    studio.actions.generate()
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    studio.window.ask_quit = lambda: "keep"
    studio.window.close()
    # The window closed and settings were saved while the engine thread is still in its step.
    assert studio.is_shut_down and studio.bridge.state == "closed"
    assert studio.bridge.engine_stuck and studio.bridge.engine_thread_alive and fake_engine.held.is_set()
    assert (data_dir / "settings.json").is_file()
    fake_engine.release()  # let the thread end, for the leak guard
    qtbot.waitUntil(lambda: not studio.bridge.engine_thread_alive, timeout=10_000)


def test_a_job_this_device_would_take_very_long_on_asks_first(make_studio, data_dir, fake_engine, fake_model, qtbot):
    import json

    studio = make_studio(data_dir, fake_engine)
    _setup(studio, steps=3)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    measured = json.loads((data_dir / "step_times.json").read_text())
    assert measured["cpu"] > 0 and measured["memory"] == {}  # kept per device, from the job's timings
    # As if this CPU had measured 100 s per step per megapixel: 512x512, 25 steps is about 11 minutes.
    studio.actions.step_times._rates["cpu"] = 100.0
    p = studio.params
    p.width, p.height, p.steps = 512, 512, 25
    asked = []
    studio.actions.confirm_long_job = lambda line: asked.append(line) or False
    assert studio.actions.generate() is None and not studio.queue.busy
    assert asked == ["This will take about 11 minutes on this CPU; continue?"]
    assert studio.status.activity.startswith("Not started: it would take about 11 minutes on this CPU")
    studio.actions.confirm_long_job = lambda line: True
    fake_engine.hold_at_step = 1
    job = studio.actions.generate()
    assert job is not None
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    studio.queue.cancel(job.id)
    # A small job asks nothing.
    p.width, p.height, p.steps = 64, 64, 2
    studio.actions.confirm_long_job = lambda line: pytest.fail(line)
    qtbot.waitUntil(lambda: not studio.queue.busy, timeout=10_000)
    fake_engine.hold_at_step = None
    assert studio.actions.generate() is not None


def test_a_job_that_would_not_fit_in_memory_asks_first_from_what_a_job_took(make_studio, data_dir, fake_engine,
                                                                           fake_model, qtbot):
    from engine.api import MemoryUse

    studio = make_studio(data_dir, fake_engine)
    _setup(studio, steps=2)
    p = studio.params
    p.width, p.height = 512, 512
    # The engine measured this job: 3 GB held when it started, 4 GB at its peak, on a 16 GB computer:
    # 1 GB for 0.26 megapixels, so 2048x2048 (4.2 MP) needs about 3 + 16 = 19 GB.
    fake_engine.memory = MemoryUse(before=3 * 10**9, peak=4 * 10**9, total=16 * 10**9)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    asked = []
    studio.actions.confirm_long_job = lambda line: asked.append(line) or False
    p.width, p.height = 2048, 2048
    assert studio.actions.generate() is None and not studio.queue.busy
    assert asked == ["This needs about 19 GB of memory, but this computer has 16 GB: it may fail or be very slow; "
                     "continue?"]
    assert studio.status.activity == ("Not started: it needs about 19 GB of memory, but this computer has 16 GB: "
                                      "it may fail or be very slow. A smaller size needs less memory.")
    # The figures survive a restart; a size that fits asks nothing.
    again = StepTimes(data_dir / "step_times.json")
    assert again.warning(studio.params.to_request(), "cpu") == asked[0]
    p.width, p.height = 1024, 1024  # 3 + 4 GB
    assert again.warning(studio.params.to_request(), "cpu") is None
    # The hires fix's second pass runs at its enlarged size (2048x2048 here); a tiled job one tile at a time.
    assert "19 GB" in again.warning(studio.params.to_request().replace(hires_scale=2.0), "cpu")
    from engine.api import Mode

    tiled = studio.params.to_request().replace(width=4096, height=4096, tile=1024, mode=Mode.IMG2IMG,
                                                init_image=Image.new("RGB", (2048, 2048)))
    assert again.warning(tiled, "cpu") is None
    studio.actions.confirm_long_job = lambda line: pytest.fail(line)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        assert studio.actions.generate() is not None

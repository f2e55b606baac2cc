"""The Speed choice in the prompt panel and the one-off compile status line (issue 19)."""

from __future__ import annotations

import time

from desktop_app.bridge import ProgressUpdate
from engine.api import Progress
from engine.core.speed import COMPILE_STATUS
from tests.desktop_app.conftest import screenshot
from tests.desktop_app.fakes import make_fake_model


def test_speed_choice_reaches_the_request_and_the_compile_status_shows(make_studio, data_dir, fake_engine, qtbot):
    studio = make_studio(data_dir, fake_engine)
    panel = studio.window.prompt_panel
    combo = panel.speed_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["Standard", "Fast", "Draft"]
    assert studio.params.speed == "standard"
    combo.setCurrentIndex(combo.findData("fast"))
    assert studio.params.speed == "fast"
    screenshot(panel, "prompt-panel-speed.png")

    fake_engine.hold_at_step = 1
    studio.params.model = str(make_fake_model(data_dir / "models" / "m.safetensors"))
    qtbot.waitUntil(lambda: studio.actions.generate_enabled, timeout=10_000)
    studio.params.steps = 3
    job = studio.actions.generate()
    assert job.request.speed == "fast"
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    # What the engine sends before the first compile: a step-0 event named "Optimising for this GPU, once".
    studio.queue._on_bridge_progress(job, ProgressUpdate(Progress(0, 3, 0.5, stage=0, stage_name=COMPILE_STATUS),
                                                         None, time.monotonic()))
    bar = studio.window.progress.bar
    assert bar.format() == f"{COMPILE_STATUS} · Step 0/3"
    # Grabbed without processing events: the fake engine's own held step-1 event would replace the text.
    from tests.desktop_app.conftest import SCREENSHOT_DIR

    studio.window.progress.grab().save(str(SCREENSHOT_DIR / "progress-compile-status.png"))
    studio.queue._on_bridge_progress(job, ProgressUpdate(Progress(1, 3, 60.0), None, time.monotonic() + 60))
    assert bar.format() == "Step 1/3"
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=10_000):
        studio.actions.cancel_current()

    # The choice is a setting: it survives a restart of the window.
    studio.params.speed = "draft"
    assert panel.speed_combo.currentData() == "draft"
    assert studio.params.to_dict()["speed"] == "draft"

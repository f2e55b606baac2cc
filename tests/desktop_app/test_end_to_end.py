"""End to end through the real engine thread: torch + diffusers, a tiny random-weight model, a PNG."""

from __future__ import annotations

import sys
import threading

from PIL import Image

from tests.desktop_app.conftest import screenshot

def test_real_engine_generates_a_png_with_metadata_and_cancels(make_studio, data_dir, tiny_models, qtbot):
    model = tiny_models.get("sd15")
    studio = make_studio(data_dir)  # the default factory: engine.engine.Engine on the engine thread
    assert studio.bridge.state == "ready", studio.bridge.error
    assert "torch" in sys.modules  # imported, but by the engine thread after the window was shown
    studio.actions.add_model_folder(str(model.parent))
    qtbot.waitUntil(lambda: any(m.path == str(model) and m.usable for m in studio.catalog.models), timeout=30_000)
    p = studio.params
    p.model, p.prompt, p.negative_prompt = str(model), "a tiny test", "blur"
    p.width, p.height, p.steps, p.sampler, p.seed_mode, p.seed = 64, 64, 4, "Euler", "fixed", 3
    previews = []
    studio.queue.preview_changed.connect(previews.append)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        assert studio.actions.generate() is not None
    assert previews, "no preview arrived"
    assert studio.gallery.model.rowCount() == 1
    item = studio.gallery.current
    assert (item.width, item.seed) == (64, 3)
    path = studio.gallery.absolute(item)
    assert path.parent == data_dir / "outputs"
    qtbot.waitUntil(lambda: studio.window.canvas_panel.pixmap is not None, timeout=5000)
    with Image.open(path) as png:
        assert png.size == (64, 64)
        params = png.text["parameters"]
    assert params.startswith("a tiny test\nNegative prompt: blur\n") and "Seed: 3" in params and "Steps: 4" in params
    status = studio.window.status_widget
    assert status.device_label.text() == "Device: cpu" and "sd15" in status.model_label.text()
    screenshot(studio.window, "real-engine-result.png")

    # Cancel mid-run through the real step callback: it stops at the step it was on, no file.
    p.steps = 40
    stepped = threading.Event()
    studio.queue.job_progressed.connect(lambda job, info: info.step >= 2 and stepped.set())
    job = studio.actions.generate()
    qtbot.waitUntil(stepped.is_set, timeout=60_000)
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=30_000):
        studio.actions.cancel_current()
    assert job.status.value == "cancelled"
    assert len(list((data_dir / "outputs").glob("*.png"))) == 1
    assert studio.gallery.model.rowCount() == 1


def test_real_engine_rejects_a_bad_model_and_keeps_working(make_studio, data_dir, tiny_models, qtbot):
    model = tiny_models.get("sd15")
    bad = data_dir / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    studio = make_studio(data_dir)
    p = studio.params
    p.model, p.prompt, p.width, p.height, p.steps = str(bad), "x", 64, 64, 2
    with qtbot.waitSignal(studio.queue.job_failed, timeout=60_000):
        studio.actions.generate()
    assert studio.window.banner.isVisible()
    assert "bad.safetensors" in studio.window.banner.message.text()
    p.model = str(model)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        studio.actions.generate()


def test_first_run_demo_model_button_makes_a_model_and_enables_generate(make_studio, data_dir, fake_engine, qtbot):
    studio = make_studio(data_dir, fake_engine)
    w = studio.window
    assert w.center_stack.currentWidget() is w.first_run and not w.prompt_panel.generate_button.isEnabled()
    with qtbot.waitSignal(studio.actions.demo_model_made, timeout=120_000):
        w.first_run.demo_button.click()
    assert (data_dir / "models" / "easel-demo-tiny" / "model_index.json").is_file()
    assert studio.params.model.endswith("easel-demo-tiny")
    assert w.center_stack.currentWidget() is w.canvas_panel
    assert w.prompt_panel.generate_button.isEnabled()

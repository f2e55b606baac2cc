"""Live mode on the real engine thread with a tiny random-weight Turbo model: strokes re-render the
canvas (latest wins, no backlog, the result of a plain generation of the final canvas), a stroke
mid-run cancels it within a step, the prompt is encoded once while it is unchanged, and Apply makes
a new layer (and a gallery image); live frames stay out of the queue and the gallery."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from desktop_app.state.canvas import qimage_to_array
from tests.desktop_app.conftest import screenshot


@pytest.fixture(scope="module")
def turbo_model(tiny_models, tmp_path_factory):
    """The tiny SD model in a folder named as SD-Turbo's: the probe makes it a Turbo model (1–4 steps, no CFG)."""
    dest = tmp_path_factory.mktemp("live-models") / "tiny-sd-turbo"
    shutil.copytree(tiny_models.get("sd15"), dest)
    return dest


def _studio(make_studio, data_dir, qtbot, tmp_path, model, *, steps=2, size=(96, 64)):
    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(model.parent))
    qtbot.waitUntil(lambda: any(m.path == str(model) and m.usable for m in studio.catalog.models), timeout=30_000)
    p = studio.params
    p.model = str(model)
    p.prompt, p.steps, p.sampler, p.seed_mode, p.seed = "a lake at dusk", steps, "Euler", "fixed", 7
    p.edit_mode, p.strength = "img2img", 0.6
    source = Image.new("RGB", size, (40, 110, 180))
    ImageDraw.Draw(source).rectangle((0, size[1] * 2 // 3, size[0], size[1]), fill=(30, 80, 40))
    source.save(tmp_path / "lake.png")
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=10_000):
        studio.actions.canvas.open_file(tmp_path / "lake.png")
    p.edit_mode = "img2img"
    doc = studio.actions.document
    doc.set_active(doc.layers[0].key)  # paint on the picture
    doc.brush.set_tool("brush")
    doc.brush.set_size(6)
    doc.brush.set_colour(QColor(240, 200, 40))
    return studio


def stroke(doc, i: int) -> None:
    x, y = 8 + (i * 7) % 80, 10 + (i * 5) % 40
    doc.begin_stroke(x, y)
    doc.stroke_to(x + 6, y + 3)
    doc.end_stroke()


def settled(live, doc) -> bool:
    return (not live.running and not live._timer.isActive() and live.frame is not None
            and live.frame.revision == doc.revision)


def test_a_burst_of_strokes_gives_at_most_two_runs_and_the_plain_result_of_the_final_canvas(
        make_studio, data_dir, qtbot, tmp_path, turbo_model):
    studio = _studio(make_studio, data_dir, qtbot, tmp_path, turbo_model)
    doc, live, panel = studio.actions.document, studio.actions.canvas.live, studio.window.canvas_panel
    panel.live_bar.live_button.click()  # the Live toggle on the canvas's generation bar
    assert live.enabled
    qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
    assert panel.live_view.isVisible() and panel.live_view.pixmap is not None  # beside the canvas
    first = qimage_to_array(live.frame.image).copy()

    started = live.runs_started
    for i in range(20):  # a burst: each stroke is one undo step, as the mouse makes them
        stroke(doc, i)
        QApplication.processEvents()
    qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
    assert live.runs_started - started <= 2
    assert live.runs_started == live.runs_finished + live.runs_cancelled  # nothing left behind
    frame = live.frame
    assert not np.array_equal(qimage_to_array(frame.image), first)  # the strokes changed the result
    screenshot(studio.window, "live_mode.png")

    # A plain generation (the queue, same seed) of the final canvas makes the same pixels.
    live.set_enabled(False)
    assert live.frame is None and not panel.live_view.isVisible()
    assert studio.queue.history == [] and studio.gallery.model.rowCount() == 0  # live frames are in neither
    with qtbot.waitSignal(studio.queue.job_finished, timeout=60_000):
        job = studio.actions.generate()
    assert job.request.seed == frame.seed == 7
    plain = qimage_to_array(doc.current_candidate().image)
    # (on a CPU a live run uses one torch thread, the queue torch's own count: the sums round differently,
    # by at most one level in a few pixels; the frame before the burst is far from it)
    diff = np.abs(plain[..., :3].astype(int) - qimage_to_array(frame.image)[..., :3].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001
    assert np.abs(plain[..., :3].astype(int) - first[..., :3].astype(int)).mean() > 1


def test_a_stroke_mid_run_cancels_it_within_one_step(make_studio, data_dir, qtbot, tmp_path, tiny_models):
    model = tiny_models.get("sd15")  # any model works live; 30 steps make a run long enough to paint into
    studio = _studio(make_studio, data_dir, qtbot, tmp_path, model, steps=30, size=(128, 128))
    doc, live = studio.actions.document, studio.actions.canvas.live
    live.set_enabled(True)
    qtbot.waitUntil(lambda: live.running and live._step >= 2, timeout=60_000)
    runner = studio.bridge._engine.runner
    cancel = live._cancel
    after: list[int] = []  # UNet steps begun after the cancel was asked for
    hook = runner.base.unet.register_forward_pre_hook(lambda *_: after.append(1) if cancel.is_set() else None)
    live.running_changed.connect(lambda running: None if running else live.set_enabled(False))
    try:
        stroke(doc, 3)
        assert cancel.is_set()  # at once, not after the pause that starts the next run
        qtbot.waitUntil(lambda: live.runs_cancelled == 1, timeout=60_000)
    finally:
        hook.remove()
    assert len(after) <= 1
    asked, stopped = live.cancelled_steps[-1]
    assert stopped < 30 and stopped - asked <= 2  # (the GUI's step lags the engine's by up to one)
    assert live.runs_finished == 0 and live.frame is None  # the stale run left nothing


def test_live_runs_on_a_cpu_leave_the_cores_to_the_window(make_studio, data_dir, qtbot, tmp_path, turbo_model):
    """A live run on the CPU uses one torch thread (torch's other threads would spin against the GUI
    thread while the artist paints: bench/bench_live.py); a queue job keeps torch's own thread count,
    and the count is back after the live run."""
    import torch

    from desktop_app import bridge

    studio = _studio(make_studio, data_dir, qtbot, tmp_path, turbo_model)
    engine = studio.bridge._engine
    assert engine.device == "cpu" and bridge.LIVE_TORCH_THREADS == 1
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # (a machine of one core would have nothing to give back)
    seen: list[int] = []
    real = engine.generate

    def recording(request, on_progress=None, cancel=None):
        def progress(p):
            seen.append(torch.get_num_threads())
            if on_progress is not None:
                on_progress(p)
        return real(request, on_progress=progress, cancel=cancel)

    engine.generate = recording
    try:
        doc, live = studio.actions.document, studio.actions.canvas.live
        live.set_enabled(True)
        qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
        live.set_enabled(False)
        assert seen and set(seen) == {1}
        seen.clear()
        with qtbot.waitSignal(studio.queue.job_finished, timeout=60_000):
            studio.actions.generate()
        assert seen and set(seen) == {2}
    finally:
        engine.generate = real
        torch.set_num_threads(before)


def test_the_prompt_is_encoded_once_while_unchanged(make_studio, data_dir, qtbot, tmp_path, turbo_model):
    studio = _studio(make_studio, data_dir, qtbot, tmp_path, turbo_model)
    doc, live = studio.actions.document, studio.actions.canvas.live
    studio.params.seed_mode = "random"  # live mode pins one seed all the same
    live.set_enabled(True)
    qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
    seed = live.frame.seed
    calls: list[int] = []
    hook = studio.bridge._engine.runner.base.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        for i in range(3):
            stroke(doc, i)
            qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
        assert live.runs_finished >= 4 and calls == []  # three more runs, no text encoding
        assert live.frame.seed == seed  # pinned: the strokes changed the picture, not the noise
        # A layer shown or hidden and a strength change re-render too (still no encoding).
        for change in (lambda: doc.add_layer("image"), lambda: doc.set_layer_visible(doc.layers[-1].key, False),
                       lambda: setattr(studio.params, "strength", 0.8)):
            runs = live.runs_started
            change()
            qtbot.waitUntil(lambda: live.runs_started > runs and settled(live, doc), timeout=60_000)
        assert live.frame.result.request.strength == 0.8 and calls == []
        studio.params.prompt = "a lake at dawn"
        qtbot.waitUntil(lambda: live.running, timeout=10_000)
        qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
        assert calls  # a new prompt is encoded
        encoded = len(calls)
        finished = live.runs_finished
        stroke(doc, 9)
        qtbot.waitUntil(lambda: settled(live, doc) and live.runs_finished > finished, timeout=60_000)
        assert len(calls) == encoded
        live.new_seed()  # New seed: another pinned seed, and a run with it
        qtbot.waitUntil(lambda: settled(live, doc) and live.frame.seed != seed, timeout=60_000)
    finally:
        hook.remove()
        live.set_enabled(False)


def test_apply_makes_a_new_layer_and_a_gallery_image(make_studio, data_dir, qtbot, tmp_path, turbo_model):
    studio = _studio(make_studio, data_dir, qtbot, tmp_path, turbo_model)
    doc, live, panel = studio.actions.document, studio.actions.canvas.live, studio.window.canvas_panel
    live.set_enabled(True)
    live.set_overlay(True)
    qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
    assert panel.view.live_item.isVisible() and not panel.live_view.isVisible()  # over the canvas
    frame = live.frame
    layers = len(doc.layers)
    panel.live_bar.apply_button.click()
    assert len(doc.layers) == layers + 1
    top = doc.layers[-1]
    assert top.kind == "image" and top.name == "Live result 1" and top.visible
    # The canvas is now the live result (img2img changed every pixel it shows).
    assert np.array_equal(np.asarray(doc.image_pil()), np.asarray(frame.result.images[0]))
    qtbot.waitUntil(lambda: studio.gallery.model.rowCount() == 1, timeout=30_000)  # applied: saved
    live.set_enabled(False)
    doc.undo_stack.undo()
    assert len(doc.layers) == layers


def test_a_region_layer_the_model_cannot_take_is_said_once_per_session_not_every_frame(
        make_studio, data_dir, qtbot, tmp_path):
    from engine import families

    _f, amused = families.test_models()["amused"]
    model = amused.write(tmp_path / "models" / "amused", "diffusers", 0)  # takes no regions
    studio = _studio(make_studio, data_dir, qtbot, tmp_path, model, size=(64, 64))
    doc, live = studio.actions.document, studio.actions.canvas.live
    region = doc.add_layer("region", prompt="a red boat")
    doc.set_active(region.key)
    doc.fill_rect((0, 0, 32, 32))
    doc.set_active(doc.layers[0].key)
    notices: list[str] = []
    studio.reporter.notice_posted.connect(notices.append)

    def frames(n: int) -> None:
        for i in range(n):
            finished = live.runs_finished
            stroke(doc, i)
            qtbot.waitUntil(lambda: live.runs_finished > finished and settled(live, doc), timeout=60_000)

    live.set_enabled(True)
    qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
    frames(2)
    said = [n for n in notices if "region" in n]
    assert live.runs_finished >= 3 and len(said) == 1 and "left out" in said[0]
    live.set_enabled(False)
    live.set_enabled(True)  # a new session of live painting says it again, once
    qtbot.waitUntil(lambda: settled(live, doc), timeout=60_000)
    frames(1)
    assert len([n for n in notices if "region" in n]) == 2
    assert [layer.kind for layer in doc.layers].count("region") == 1  # the layer stays

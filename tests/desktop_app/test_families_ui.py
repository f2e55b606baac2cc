"""Issue 8's window: per-family defaults and disabled settings, Variations and Upscale from the gallery
and the canvas, per-stage progress, and aMUSEd inpainting on the canvas, through the real engine thread
with tiny random-weight models (SD, aMUSEd, an ESRGAN upscaler)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.state.jobs import ProgressInfo
from desktop_app.ui.progress import progress_text
from engine.api import ModelInfo
from tests.desktop_app.conftest import screenshot
from tests.desktop_app.fakes import make_fake_model


@pytest.fixture(scope="module")
def amused_model(tmp_path_factory) -> Path:
    from engine.families.amused.testmodel import make_amused_test_model

    return make_amused_test_model(tmp_path_factory.mktemp("amused") / "amused-tiny-256")


@pytest.fixture(scope="module")
def esrgan_model(tmp_path_factory) -> Path:
    """A tiny RRDB ESRGAN made with ``easel make-test-model FOLDER --family esrgan`` (random output: the
    tests check sizes, progress and cancel; the demo upscaler the dialog suggests is the compact one)."""
    from engine.cli import main

    folder = tmp_path_factory.mktemp("upscalers")
    assert main(["make-test-model", str(folder), "--family", "esrgan"]) == 0
    return folder / "tiny-esrgan-x4.safetensors"


def _wait_model(qtbot, studio, path: Path) -> None:
    qtbot.waitUntil(lambda: studio.catalog.find(str(path)) is not None, timeout=30_000)


def _pick(studio, path: Path) -> None:
    """As the artist does: choose the model in the prompt panel's picker."""
    combo = studio.window.prompt_panel.model_combo
    combo.setCurrentIndex(combo.findData(str(path)))


# -- per-family defaults and disabled settings (fake engine: no generation needed) ----------------


def test_picking_amused_or_turbo_applies_defaults_once_and_disables_what_they_do_not_take(
        make_studio, data_dir, fake_engine, amused_model, qtbot):
    models = data_dir / "models"
    sd = make_fake_model(models / "plain-sd.safetensors")
    turbo = make_fake_model(models / "sd-turbo-fake.safetensors")
    shutil.copytree(amused_model, models / "amused-tiny-256")
    amused = models / "amused-tiny-256"
    studio = make_studio(data_dir, fake_engine)
    studio.actions.rescan_models()
    _wait_model(qtbot, studio, amused)
    _wait_model(qtbot, studio, turbo)
    panel, p = studio.window.prompt_panel, studio.params

    _pick(studio, sd)
    p.steps, p.guidance_scale = 30, 6.0
    _pick(studio, amused)
    assert (p.width, p.height, p.steps, p.guidance_scale) == (256, 256, 12, 10.0)
    assert not panel.sampler_combo.isEnabled()
    assert panel.sampler_combo.toolTip() == "aMUSEd does not use a sampler."
    assert panel.steps_spin.isEnabled() and panel.cfg_spin.isEnabled()
    assert panel.model_kind_label.text() == "aMUSEd token transformer"
    assert "(aMUSEd token transformer)" in panel.model_combo.currentText()
    screenshot(studio.window, "prompt-panel-amused.png")

    # A value changed after the pick stays changed: defaults apply once per pick, not continuously.
    panel.steps_spin.setValue(7)
    qtbot.waitUntil(lambda: p.steps == 7)
    studio.actions.rescan_models()
    qtbot.waitUntil(lambda: not studio.catalog.scanning)
    assert p.steps == 7

    _pick(studio, turbo)
    assert (p.steps, p.guidance_scale, p.width) == (1, 0.0, 512)
    assert not panel.negative_edit.isEnabled() and "Turbo models do not use a negative prompt" in panel.negative_edit.toolTip()
    assert (panel.steps_spin.minimum(), panel.steps_spin.maximum()) == (1, 4)
    panel.steps_spin.setValue(9)  # clamped to what a one-step model takes
    assert p.steps == 4
    assert panel.sampler_combo.isEnabled()

    # Back to plain SD: every control is enabled again with its own tooltip, steps range restored.
    _pick(studio, sd)
    assert panel.negative_edit.isEnabled() and panel.sampler_combo.isEnabled()
    assert panel.sampler_combo.toolTip() == "The sampler (scheduler) used for denoising"
    assert panel.steps_spin.maximum() == 150 and (p.steps, p.guidance_scale) == (25, 7.0)


def test_restoring_settings_wins_over_the_models_defaults(make_studio, data_dir, fake_engine, amused_model, qtbot):
    models = data_dir / "models"
    sd = make_fake_model(models / "plain-sd.safetensors")
    shutil.copytree(amused_model, models / "amused-tiny-256")
    amused = models / "amused-tiny-256"
    studio = make_studio(data_dir, fake_engine)
    studio.actions.rescan_models()
    _wait_model(qtbot, studio, amused)
    _pick(studio, sd)
    # An image made with the aMUSEd model at 64 px, 5 steps: restoring it picks that model and keeps the image's values.
    from engine.api import GenerationRequest, Result, RuntimeSettings, Timings
    from engine.metadata import png_info

    info = studio.catalog.find(str(amused))
    request = GenerationRequest(prompt="lantern", model=str(amused), seed=4, steps=5, guidance_scale=3.0,
                                width=64, height=64)
    result = Result((Image.new("RGB", (64, 64)),), (4,), request, info, "abc", RuntimeSettings("cpu", "float32", "fast"),
                    Timings())
    path = data_dir / "made.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=png_info(result, 0, app_version="test"))
    with qtbot.waitSignal(studio.actions.settings_restored, timeout=10_000):
        studio.actions.restore_settings(path)
    p = studio.params
    assert p.model == str(amused)
    assert (p.width, p.steps, p.guidance_scale) == (64, 5, 3.0)


def test_unclip_and_cascade_rules_and_kind_labels():
    from desktop_app.state import families

    unclip = ModelInfo("/m/u", "sd21-unclip", "checkpoint", "unclip", "diffusers", variant="unclip")
    assert "variations of an image" in families.mode_blocked(unclip, "txt2img")
    assert families.mode_blocked(unclip, "img2img") == ""
    cascade = ModelInfo("/m/if", "IF-I-XL", "checkpoint", "deepfloyd-if", "diffusers", variant="cascade")
    assert families.kind_label(cascade) == "DeepFloyd IF cascade"
    assert families.size_presets(cascade) is not None and len(families.size_presets(cascade)) == 1
    assert "64 px" in families.unsupported(cascade)["width"]
    turbo = ModelInfo("/m/t", "sdxl-turbo", "checkpoint", "sdxl", "diffusers", variant="turbo")
    assert families.kind_label(turbo) == "SDXL Turbo (1–4 steps)"
    gan = ModelInfo("/m/x.safetensors", "x4", "upscaler", "", "safetensors")
    assert families.kind_label(gan) == "Upscaler (GAN)"


def test_unclip_blocks_new_image_with_the_reason(make_studio, data_dir, fake_engine, qtbot):
    studio = make_studio(data_dir, fake_engine)
    unclip = ModelInfo(str(data_dir / "sd21-unclip"), "sd21-unclip", "checkpoint", "unclip", "diffusers",
                       variant="unclip")
    studio.catalog.set_models([unclip])
    studio.params.model = unclip.path
    assert not studio.actions.generate_enabled
    assert "Stable unCLIP makes variations of an image" in studio.window.prompt_panel.blocked_label.text()


# -- per-stage progress -----------------------------------------------------------------------------


def test_per_stage_progress_text_and_fraction_cover_the_whole_cascade(make_studio, data_dir, fake_engine, qtbot):
    info = ProgressInfo(step=7, total=20, image_index=0, batch_count=1, rate=2.0, eta=10.0, stage=2, stages=3,
                        stage_name="Stage II 256 px")
    assert progress_text(info) == "Stage 2/3 · Stage II 256 px · Step 7/20"
    assert info.fraction == pytest.approx((1 + 7 / 20) / 3)
    assert ProgressInfo(20, 20, 0, 1, 0, None, stage=3, stages=3).fraction == pytest.approx(1.0)
    assert progress_text(ProgressInfo(3, 10, 1, 2, 0, None)) == "Image 2/2 · Step 3/10"

    # Through the queue and the progress bar, as the engine's Progress events arrive.
    from desktop_app.bridge import ProgressUpdate
    from engine.api import Progress

    studio = make_studio(data_dir, fake_engine)
    fake_engine.hold_at_step = 1
    studio.params.model = str(make_fake_model(data_dir / "models" / "m.safetensors"))
    qtbot.waitUntil(lambda: studio.actions.generate_enabled, timeout=10_000)
    studio.params.steps = 3
    job = studio.actions.generate()
    qtbot.waitUntil(fake_engine.held.is_set, timeout=10_000)
    import time

    for k, (name, total) in enumerate((("Stage I 64 px", 30), ("Stage II 256 px", 20), ("Upscale x4", 10)), 1):
        studio.queue._on_bridge_progress(job, ProgressUpdate(Progress(5, total, 1.0, stage=k, stages=3, stage_name=name),
                                                             None, time.monotonic() + k))
    bar = studio.window.progress.bar
    assert bar.format() == "Stage 3/3 · Upscale x4 · Step 5/10"
    assert bar.value() == int((2 + 0.5) / 3 * 1000)
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=10_000):
        studio.actions.cancel_current()


# -- Variations and Upscale through the real engine thread ------------------------------------------


@pytest.fixture
def real_studio(make_studio, data_dir, tiny_models, esrgan_model, qtbot):
    model = tiny_models.get("sd15")
    (data_dir / "models").mkdir(exist_ok=True)
    shutil.copy(esrgan_model, data_dir / "models" / esrgan_model.name)
    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(model.parent))
    qtbot.waitUntil(lambda: studio.catalog.find(str(model)) is not None and bool(studio.actions.images.upscalers()),
                    timeout=30_000)
    p = studio.params
    p.model = str(model)
    p.prompt, p.width, p.height, p.steps, p.sampler, p.seed_mode, p.seed = "a red kite", 64, 64, 4, "Euler", "fixed", 11
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        studio.actions.generate()
    return studio


def test_variations_from_the_gallery_make_n_images_from_the_source(real_studio, data_dir, qtbot):
    studio = real_studio
    source = studio.gallery.current
    w = studio.window
    menu = w.gallery_panel.build_menu(source)
    action = next(a for a in menu.actions() if a.text() == "Variations…")
    assert action.isEnabled()
    action.trigger()
    dialog = w.variations_dialog
    assert dialog.isVisible() and dialog.prompt_edit.toPlainText() == "a red kite"
    assert dialog.model == studio.params.model  # the image's own model, found in the library
    dialog.count_spin.setValue(3)
    dialog.strong_radio.setChecked(True)
    assert dialog.strength == pytest.approx(0.7)
    screenshot(dialog, "variations-dialog.png")
    with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000) as done:
        dialog.make_button.click()
    job, outcome = done.args
    assert job.title == f"Variations of {source.name}"
    assert studio.gallery.model.rowCount() == 4
    from engine.metadata import read_metadata

    seeds = set()
    for path in outcome.paths:
        meta = read_metadata(path)
        f = meta.fields
        assert (f["mode"], f["prompt"], f["strength"]) == ("img2img", "a red kite", 0.7)
        assert Image.open(path).size == (64, 64)
        seeds.add(f["seed"])
    assert len(seeds) == 3 and 11 not in seeds

    # From the canvas (Image › Variations…): no stored settings, so the prompt panel's prompt is used.
    studio.actions.document.set_image(Image.open(outcome.paths[0]).convert("RGB"), "a variation")
    studio.params.prompt = "a blue kite"
    dialog = w.show_variations_dialog()
    assert dialog.prompt_edit.toPlainText() == "a blue kite" and "the canvas" in dialog.heading.text()
    dialog.count_spin.setValue(1)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000) as done:
        dialog.make_button.click()
    assert read_metadata(done.args[1].paths[0]).fields["prompt"] == "a blue kite"


def test_upscale_x4_with_a_gan_shows_before_after_and_cancel_leaves_nothing(real_studio, data_dir, qtbot):
    studio = real_studio
    w = studio.window
    source = studio.gallery.current
    outputs = data_dir / "outputs"
    before_files = set(outputs.glob("*.png"))

    dialog = w.show_upscale_dialog(studio.actions.images.source_for(source))
    assert dialog.model_combo.count() == 1 and "Upscaler (GAN)" in dialog.model_combo.currentText()
    assert dialog.size_label.text() == "256 × 256 px"
    screenshot(dialog, "upscale-dialog.png")
    with qtbot.waitSignal(studio.actions.images.upscaled, timeout=120_000) as done:
        dialog.upscale_button.click()
    shown = done.args[0]
    new = set(outputs.glob("*.png")) - before_files
    assert len(new) == 1
    with Image.open(new.pop()) as png:
        assert png.size == (256, 256)
        assert "a red kite" in png.text["parameters"]  # the source's settings are kept
        assert "Postprocess upscale by: 4" in png.text["postprocessing"]
    assert studio.gallery.current == shown.entry and studio.gallery.model.rowCount() == 2
    result_dialog = w.upscale_result_dialog
    assert result_dialog.isVisible()
    assert (result_dialog.view.before.width(), result_dialog.view.after.width()) == (64, 256)
    screenshot(result_dialog, "upscale-before-after.png")
    result_dialog.open_button.click()
    qtbot.waitUntil(lambda: studio.actions.document.has_image and studio.actions.document.width == 256, timeout=10_000)

    # Cancel mid-upscale: a large canvas in small tiles, cancelled after the first tile: no file, no entry.
    studio.actions.document.set_image(Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)),
                              "noise")
    files = set(outputs.glob("*.png"))
    rows = studio.gallery.model.rowCount()
    first_tile = threading.Event()
    studio.queue.job_progressed.connect(lambda job, info: job.upscale is not None and first_tile.set())
    task = studio.actions.images.upscale(studio.actions.images.canvas_source(), str(shown_model(studio)), 4, 32)
    qtbot.waitUntil(first_tile.is_set, timeout=60_000)
    job = task.result()
    assert w.progress.bar.format().startswith("Tile ")
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=60_000):
        studio.actions.cancel_current()
    assert job.status.value == "cancelled"
    assert set(outputs.glob("*.png")) == files and not list(outputs.glob("*.tmp*"))
    assert studio.gallery.model.rowCount() == rows


def shown_model(studio) -> str:
    return studio.actions.images.upscalers()[0].path


def test_upscale_dialog_without_upscalers_says_where_they_go(make_studio, data_dir, fake_engine, qtbot):
    studio = make_studio(data_dir, fake_engine)
    studio.actions.document.set_image(Image.new("RGB", (64, 48), (10, 20, 30)), "a test")
    dialog = studio.window.show_upscale_dialog()
    assert dialog.empty_label.isVisible() and "easel make-test-model" in dialog.empty_label.text()
    assert not dialog.upscale_button.isEnabled()
    screenshot(dialog, "upscale-dialog-no-upscalers.png")
    dialog.reject()


def test_amused_inpaint_on_the_canvas_changes_only_the_masked_region(make_studio, data_dir, amused_model, qtbot):
    studio = make_studio(data_dir)
    studio.actions.add_model_folder(str(amused_model.parent))
    _wait_model(qtbot, studio, amused_model)
    _pick(studio, amused_model)
    p = studio.params
    assert p.steps == 12  # its defaults were applied
    p.prompt, p.steps, p.seed_mode, p.seed, p.width, p.height = "a lantern", 3, "fixed", 5, 64, 64
    rng = np.random.default_rng(1)
    source = Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8))
    studio.actions.canvas.load(source, "noise", "inpaint")
    p.only_masked = False
    studio.actions.document.fill_rect((16, 16, 48, 48))
    qtbot.waitUntil(lambda: studio.actions.generate_enabled, timeout=10_000)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000) as done:
        assert studio.actions.generate() is not None
    job, outcome = done.args
    assert job.request.mode.value == "inpaint" and outcome.result.model.family == "amused"
    qtbot.waitUntil(lambda: bool(studio.actions.document.candidates), timeout=10_000)
    studio.actions.canvas.accept()
    after = np.asarray(studio.actions.document.image_pil())
    before = np.asarray(source)
    outside = np.ones((64, 64), bool)
    outside[16:48, 16:48] = False
    assert np.array_equal(after[outside], before[outside])
    assert not np.array_equal(after[20:44, 20:44], before[20:44, 20:44])

    # Image to image on the whole canvas runs too.
    p.edit_mode = "img2img"
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000) as done:
        assert studio.actions.generate() is not None
    assert done.args[1].result.request.mode.value == "img2img"

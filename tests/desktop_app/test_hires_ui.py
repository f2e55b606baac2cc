"""The hires fix in the prompt panel and Upscale with detail in the Upscale dialog, through the real engine
thread with the tiny SD model and the demo GAN; restoring an A1111 PNG's settings restores the hires fields."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.metadata import read_metadata
from tests.desktop_app.conftest import screenshot

A1111_TEXT = (
    "a castle on a hill\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, "
    "Hires upscale: 1.5, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+, Version: v1.10.1"
)


@pytest.fixture(scope="module")
def compact_gan(tmp_path_factory) -> Path:
    from engine.cli import main

    folder = tmp_path_factory.mktemp("gan")
    assert main(["make-test-model", str(folder), "--family", "realesrgan-compact"]) == 0
    return next(folder.glob("*.safetensors"))


@pytest.fixture
def studio(make_studio, data_dir, tiny_models, compact_gan, qtbot):
    model = tiny_models.get("sd15")
    (data_dir / "models").mkdir(exist_ok=True)
    shutil.copy(compact_gan, data_dir / "models" / compact_gan.name)
    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(model.parent))
    qtbot.waitUntil(lambda: studio.catalog.find(str(model)) is not None and bool(studio.actions.images.upscalers()),
                    timeout=30_000)
    p = studio.params
    p.model = str(model)
    p.prompt, p.width, p.height, p.steps, p.seed_mode, p.seed = "a red kite", 64, 64, 4, "fixed", 11
    return studio


def test_hires_fix_from_the_prompt_panel_makes_the_enlarged_image_with_a_gan(studio, qtbot):
    panel = studio.window.prompt_panel
    assert not panel.hires_scale_spin.isVisible()  # off: its settings are out of the way
    panel.hires_check.setChecked(True)
    assert panel.hires_scale_spin.isVisible() and panel.upscaler_combo.isVisible()
    panel.hires_scale_spin.setValue(2.0)
    panel.hires_steps_spin.setValue(4)
    panel.hires_strength_spin.setValue(0.5)
    assert panel.upscaler_combo.itemText(0).startswith("Lanczos")
    gan = panel.upscaler_combo.findText("tiny-realesrgan-compact-x4")
    assert gan > 0
    panel.upscaler_combo.setCurrentIndex(gan)
    assert studio.params.upscaler.endswith("tiny-realesrgan-compact-x4.safetensors")
    screenshot(panel, "hires_fix.png")
    stages = set()
    studio.queue.job_progressed.connect(lambda job, info: stages.add(getattr(info, "stage_name", "")))
    with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000) as done:
        studio.actions.generate()
    _job, outcome = done.args
    assert Image.open(outcome.paths[0]).size == (128, 128)
    text = read_metadata(outcome.paths[0]).raw["parameters"]
    assert "Size: 64x64" in text
    assert "Denoising strength: 0.5, Hires upscale: 2, Hires steps: 4, Hires upscaler: tiny-realesrgan-compact-x4" in text
    # in an editing mode the hires fix is off, and says why
    studio.params.edit_mode = "img2img"
    assert not panel.hires_check.isEnabled() and "edits the canvas" in panel.hires_check.toolTip()


def test_restoring_an_a1111_png_restores_the_hires_fields(make_studio, data_dir, fake_engine, tmp_path, qtbot):
    studio = make_studio(data_dir, fake_engine)
    png = tmp_path / "a1111.png"
    info = PngInfo()
    info.add_text("parameters", A1111_TEXT)
    Image.new("RGB", (64, 96)).save(png, pnginfo=info)
    p = studio.params
    assert not p.hires
    task = studio.actions.restore_settings(png)
    qtbot.waitUntil(task.done, timeout=10_000)
    assert (p.hires, p.hires_scale, p.hires_steps, p.hires_strength) == (True, 1.5, 10, 0.45)
    assert p.upscaler == "R-ESRGAN 4x+"
    panel = studio.window.prompt_panel
    assert panel.hires_check.isChecked() and panel.hires_scale_spin.value() == 1.5
    assert panel.hires_steps_spin.value() == 10 and panel.hires_strength_spin.value() == pytest.approx(0.45)
    assert panel.upscaler_combo.currentText() == "R-ESRGAN 4x+ (not in your model folders)"
    request = p.to_request()
    assert request.hires and request.output_size == (768, 1152)
    # an image made without the hires fix turns it off again
    plain = tmp_path / "plain.png"
    info = PngInfo()
    info.add_text("parameters", A1111_TEXT.split(", Denoising strength")[0])
    Image.new("RGB", (64, 96)).save(plain, pnginfo=info)
    task = studio.actions.restore_settings(plain)
    qtbot.waitUntil(task.done, timeout=10_000)
    assert not p.hires and not p.to_request().hires


def test_upscale_with_detail_from_the_dialog_lands_in_the_gallery_with_its_recipe(studio, data_dir, qtbot):
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
        studio.actions.generate()
    w = studio.window
    dialog = w.show_upscale_dialog(studio.actions.images.source_for(studio.gallery.current))
    assert not dialog.strength_spin.isVisible()
    dialog.detail_check.setChecked(True)
    assert dialog.strength_spin.isVisible() and dialog.detail_model_combo.isVisible()
    assert dialog.model_combo.itemData(0) == "Lanczos" and dialog.model_combo.count() == 2  # + the GAN
    assert dialog.detail_model_combo.currentData() == studio.params.model  # the image's own model
    dialog.x2_radio.setChecked(True)
    dialog.strength_spin.setValue(0.4)
    assert dialog.size_label.text() == "128 × 128 px" and dialog.upscale_button.isEnabled()
    screenshot(dialog, "upscale-dialog-detail.png")
    outputs = data_dir / "outputs"
    files = set(outputs.glob("*.png"))
    with qtbot.waitSignal(studio.actions.images.upscaled, timeout=180_000) as done:
        dialog.upscale_button.click()
    shown = done.args[0]
    new = set(outputs.glob("*.png")) - files
    assert len(new) == 1
    stored = read_metadata(new.pop())
    assert stored.fields["prompt"] == "a red kite" and stored.fields["strength"] == 0.4
    assert "Detail upscaler: Lanczos, Detail tile: 1024" in stored.raw["parameters"]
    assert shown.after.width() == 128 and studio.gallery.current == shown.entry


def test_latent_hires_upscaler_from_the_prompt_panel(studio, qtbot):
    """A1111's latent upscalers are in the list; with the SD model "Latent" runs and is recorded; for a model
    whose image to image cannot start from latents they are shown off, with the reason."""
    from engine.api import ModelInfo
    from desktop_app.state import families

    panel = studio.window.prompt_panel
    panel.hires_check.setChecked(True)
    panel.hires_scale_spin.setValue(2.0)
    panel.hires_steps_spin.setValue(4)
    panel.hires_strength_spin.setValue(0.6)
    latent = panel.upscaler_combo.findText("Latent")
    assert latent == 1 and panel.upscaler_combo.findText("Latent (nearest-exact)") > latent
    assert panel.upscaler_combo.model().item(latent).isEnabled()
    panel.upscaler_combo.setCurrentIndex(latent)
    assert studio.params.upscaler == "Latent"
    screenshot(panel, "hires_fix_latent.png")
    with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000) as done:
        studio.actions.generate()
    _job, outcome = done.args
    assert Image.open(outcome.paths[0]).size == (128, 128)
    assert "Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent," in read_metadata(outcome.paths[0]).raw["parameters"]
    sd3 = ModelInfo("/m/sd3", "sd3.5-medium", "checkpoint", "sd3", "diffusers")
    assert "SD 3.5 Large cannot use a latent upscaler" in families.latent_upscale_blocked(sd3)
    assert families.latent_upscale_blocked(studio.catalog.find(studio.params.model)) == ""

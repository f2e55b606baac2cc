"""Issue 8's families end to end IN THE WINDOW, through the real engine thread: the DeepFloyd IF cascade
picked in the prompt panel, the SD x4 diffusion upscaler from the gallery's Upscale…, Stable unCLIP's
Variations… from the gallery and the canvas, and aMUSEd text-to-image. The tiny random-weight models are
made as the README tells a user to (``easel make-test-model DIR --family …``) and put in the data
folder's models folder, where the model library finds them as it finds a user's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.state.jobs import ProgressInfo
from tests.desktop_app.conftest import screenshot


@pytest.fixture(scope="module")
def family_models(tmp_path_factory) -> Path:
    """One folder per family, made with the CLI: IF-I-tiny, IF-II-tiny, x4-upscaler-tiny (the cascade),
    sd-x4-upscaler (a standalone x4 upscaler), unclip-tiny and amused-tiny-256."""
    from engine.cli import main

    root = tmp_path_factory.mktemp("family-models")
    assert main(["make-test-model", str(root / "cascade"), "--family", "deepfloyd-if"]) == 0
    assert main(["make-test-model", str(root / "sd-x4-upscaler"), "--family", "sd-x4-upscaler"]) == 0
    assert main(["make-test-model", str(root / "unclip-tiny"), "--family", "unclip"]) == 0
    assert main(["make-test-model", str(root / "amused-tiny-256"), "--family", "amused"]) == 0
    return root


def _install(data_dir: Path, source: Path) -> Path:
    """Copy a model folder (or a cascade's side-by-side folders) into the data folder's models folder."""
    models = data_dir / "models"
    models.mkdir(exist_ok=True)
    if source.name == "cascade":
        for folder in source.iterdir():
            shutil.copytree(folder, models / folder.name)
        return models / "IF-I-tiny"
    shutil.copytree(source, models / source.name)
    return models / source.name


def _pick(studio, path: Path) -> None:
    """As the artist does: choose the model in the prompt panel's picker."""
    combo = studio.window.prompt_panel.model_combo
    index = combo.findData(str(path))
    assert index >= 0, f"{path.name} is not in the model picker"
    combo.setCurrentIndex(index)


def _listed(studio, path: Path) -> bool:
    """In the model library (any kind: the picker's models, upscalers, files that cannot be used)."""
    return any(e.info.path == str(path) for e in studio.catalog.entries)


def _outputs(data_dir: Path) -> set[Path]:
    return set((data_dir / "outputs").glob("*.png"))


def _no_temp_files(data_dir: Path) -> bool:
    return not [p for p in (data_dir / "outputs").glob("*") if ".tmp" in p.name]


@pytest.fixture
def studio_with_sd_image(make_studio, data_dir, tiny_models, qtbot):
    """A window with an SD 1.5 tiny model whose 64x64 "a red kite" image is in the gallery, plus the
    caller's family folders (installed before the studio starts, so the first scan lists them)."""

    def make(*sources: Path):
        installed = [_install(data_dir, s) for s in sources]
        sd = tiny_models.get("sd15")
        studio = make_studio(data_dir)
        assert studio.bridge.state == "ready", studio.bridge.error
        studio.actions.add_model_folder(str(sd.parent))
        qtbot.waitUntil(lambda: all(_listed(studio, p) for p in (sd, *installed)),
                        timeout=30_000)
        _pick(studio, sd)
        p = studio.params
        p.prompt, p.width, p.height, p.steps, p.sampler, p.seed_mode, p.seed = "a red kite", 64, 64, 3, "Euler", "fixed", 11
        with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000):
            studio.actions.generate()
        return studio, installed

    return make


# -- 1. DeepFloyd IF: one job, three stages ---------------------------------------------------------


def test_deepfloyd_if_cascade_from_the_prompt_panel_runs_its_three_stages_as_one_job(
        make_studio, data_dir, family_models, qtbot):
    stage1 = _install(data_dir, family_models / "cascade")
    studio = make_studio(data_dir)
    qtbot.waitUntil(lambda: studio.catalog.find(str(stage1)) is not None, timeout=30_000)
    panel, p, w = studio.window.prompt_panel, studio.params, studio.window
    # Only stage I is offered as a model; stage II is listed as not usable on its own, the x4 folder as an upscaler.
    assert panel.model_combo.findData(str(stage1)) >= 0
    assert studio.catalog.find(str(data_dir / "models" / "IF-II-tiny")).usable is False
    assert [u.name for u in studio.actions.images.upscalers()] == ["x4-upscaler-tiny"]

    _pick(studio, stage1)
    # The cascade's defaults: its final size (64 -> 256 -> 1024 with the x4 stage), 50 steps, CFG 7;
    # no sampler and no free size.
    assert (p.width, p.height, p.steps, p.guidance_scale) == (1024, 1024, 50, 7.0)
    assert panel.model_kind_label.text() == "DeepFloyd IF cascade"
    assert not panel.sampler_combo.isEnabled() and not panel.width_spin.isEnabled()
    assert "1024×1024" in panel.width_spin.toolTip()
    assert panel.size_combo.currentText() == "1024 × 1024"
    qtbot.waitUntil(lambda: studio.actions.generate_enabled, timeout=10_000)
    assert panel.generate_button.isEnabled() and not panel.blocked_label.isVisible()

    panel.steps_spin.setValue(4)  # stage I 4 steps, stage II and the x4 stage 2 each
    p.prompt, p.seed_mode, p.seed = "a lighthouse at dusk", "fixed", 5
    seen: list[tuple[ProgressInfo, str]] = []
    shots: list[Path] = []

    def on_progress(job, info: ProgressInfo) -> None:
        seen.append((info, w.progress.bar.format()))
        if info.stage == 2 and info.step == 1 and not shots:  # mid-cascade: the window as the artist sees it
            # A new stage's first step has no speed yet: only the time left is shown, never "0.0 it/s".
            assert w.progress.detail.text().startswith("ETA ")
            shots.append(screenshot(w, "if-cascade-mid-stage2.png"))

    studio.queue.job_progressed.connect(on_progress)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000) as done:
        panel.generate_button.click()
    job, outcome = done.args
    texts = [text for _, text in seen]
    assert texts[0] == "Stage 1/3 · Stage I 64 px · Step 1/4"
    assert "Stage 2/3 · Stage II 256 px · Step 1/2" in texts
    assert texts[-1] == "Stage 3/3 · Upscale x4 · Step 2/2"
    stages = [info.stage for info, _ in seen]
    assert stages == sorted(stages) and set(stages) == {1, 2, 3}
    fractions = [info.fraction for info, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert shots, "no progress arrived during stage II"

    # The result is in the gallery, at the final size, with its settings (A1111 text and Easel's JSON).
    assert len(outcome.paths) == 1 and studio.gallery.model.rowCount() == 1
    assert studio.gallery.current is not None and studio.gallery.current.name == outcome.paths[0].name
    with Image.open(outcome.paths[0]) as png:
        assert png.size == (1024, 1024)
        params = png.text["parameters"]
        assert params.startswith("a lighthouse at dusk\n")
        for field in ("Steps: 4", "Seed: 5", "Size: 1024x1024", "Model: IF-I-tiny", "Stage II: IF-II-tiny",
                      "Stage III: x4-upscaler-tiny"):
            assert field in params
        assert "easel" in png.text
    assert w.progress.bar.format() == "Done"

    # Cancel while stage II runs: the job stops there, nothing reaches the gallery or the disk.
    files, rows = _outputs(data_dir), studio.gallery.model.rowCount()
    seen.clear()

    def cancel_in_stage_two(job, info: ProgressInfo) -> None:
        if info.stage == 2:
            studio.actions.cancel_current()

    studio.queue.job_progressed.connect(cancel_in_stage_two)
    p.seed = 6
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=120_000) as cancelled:
        panel.generate_button.click()
    assert cancelled.args[0].status.value == "cancelled"
    assert max(info.stage for info, _ in seen) == 2  # the x4 stage never started
    assert _outputs(data_dir) == files and _no_temp_files(data_dir)
    assert studio.gallery.model.rowCount() == rows
    assert w.progress.bar.format() == "Cancelled"


# -- 2. The SD x4 diffusion upscaler from the gallery's Upscale… --------------------------------------


def test_x4_diffusion_upscale_from_the_gallery_makes_a_4x_image_with_before_after_and_cancel_leaves_nothing(
        studio_with_sd_image, data_dir, family_models, qtbot):
    studio, (x4,) = studio_with_sd_image(family_models / "sd-x4-upscaler")
    w, source = studio.window, studio.gallery.current
    files = _outputs(data_dir)
    menu = w.gallery_panel.build_menu(source)
    action = next(a for a in menu.actions() if a.text() == "Upscale…")
    action.trigger()
    dialog = w.upscale_dialog
    assert dialog.isVisible()
    index = dialog.model_combo.findData(str(x4))
    assert index >= 0 and "Upscaler (diffusion x4)" in dialog.model_combo.itemText(index)
    dialog.model_combo.setCurrentIndex(index)
    # x4 only, tiles chosen by the memory preset: those controls are off; Upscale runs the real thing.
    assert dialog.scale == 4 and not dialog.x2_radio.isEnabled() and not dialog.tile_combo.isEnabled()
    assert dialog.size_label.text() == "256 × 256 px"
    assert "redraws detail guided by the image's prompt" in dialog.note.text()
    assert dialog.upscale_button.isEnabled()
    screenshot(dialog, "upscale-dialog-diffusion.png")

    progressed: list[ProgressInfo] = []
    studio.queue.job_progressed.connect(lambda job, info: progressed.append(info))
    with qtbot.waitSignal(studio.actions.images.upscaled, timeout=120_000) as done:
        dialog.upscale_button.click()
    shown = done.args[0]
    job = studio.queue.history[-1]
    assert job.status.value == "done" and job.title == f"Upscale x4 · {source.name}"
    assert progressed and progressed[-1].fraction == pytest.approx(1.0)

    # A 4x image in the gallery, made from the source's prompt, its settings in the file.
    new = _outputs(data_dir) - files
    assert len(new) == 1 and shown.path in new
    with Image.open(shown.path) as png:
        assert png.size == (256, 256)
        params = png.text["parameters"]
    assert params.startswith("a red kite\n") and "Model: sd-x4-upscaler" in params and "Size: 256x256" in params
    from engine.imageprep import source_hash
    from engine.metadata import read_metadata

    assert read_metadata(shown.path).extra["Init image hash"] == source_hash(Image.open(studio.gallery.absolute(source)))
    assert studio.gallery.model.rowCount() == 2 and studio.gallery.current == shown.entry

    # Before / after, and Open in canvas.
    result_dialog = w.upscale_result_dialog
    assert result_dialog.isVisible()
    assert (result_dialog.view.before.width(), result_dialog.view.after.width()) == (64, 256)
    assert "64×64 → 256×256 with sd-x4-upscaler" in result_dialog.caption.text()
    screenshot(result_dialog, "upscale-before-after-diffusion.png")
    result_dialog.open_button.click()
    qtbot.waitUntil(lambda: studio.actions.document.has_image and studio.actions.document.width == 256, timeout=10_000)

    # Cancel on the first step: no file, no gallery row.
    files, rows = _outputs(data_dir), studio.gallery.model.rowCount()
    studio.queue.job_progressed.connect(lambda job, info: studio.actions.cancel_current())
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=120_000) as cancelled:
        task = studio.actions.images.upscale(studio.actions.images.source_for(source), str(x4), 4)
    assert task.result() is cancelled.args[0] and cancelled.args[0].status.value == "cancelled"
    assert _outputs(data_dir) == files and _no_temp_files(data_dir)
    assert studio.gallery.model.rowCount() == rows

    # An image whose 4x would pass 4096 px: the dialog says so before anything runs.
    studio.actions.document.set_image(Image.new("RGB", (1100, 800), (40, 90, 160)), "a large image")
    dialog = w.show_upscale_dialog(studio.actions.images.canvas_source())
    dialog.model_combo.setCurrentIndex(dialog.model_combo.findData(str(x4)))
    assert not dialog.upscale_button.isEnabled() and "at most 4096 px" in dialog.note.text()
    dialog.reject()


# -- 3. Stable unCLIP: variations from the gallery and the canvas; no text-to-image --------------------


def test_unclip_variations_from_the_gallery_and_the_canvas_and_new_image_is_blocked(
        studio_with_sd_image, data_dir, family_models, qtbot):
    from engine.metadata import read_metadata

    studio, (unclip,) = studio_with_sd_image(family_models / "unclip-tiny")
    w, source = studio.window, studio.gallery.current
    menu = w.gallery_panel.build_menu(source)
    next(a for a in menu.actions() if a.text() == "Variations…").trigger()
    dialog = w.variations_dialog
    dialog.model_combo.setCurrentIndex(dialog.model_combo.findData(str(unclip)))
    assert "(Stable unCLIP)" in dialog.model_combo.currentText()
    assert "Stable unCLIP draws from the image itself" in dialog.note.text()
    dialog.count_spin.setValue(2)
    dialog.strong_radio.setChecked(True)
    screenshot(dialog, "variations-dialog-unclip.png")
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000) as done:
        dialog.make_button.click()
    job, outcome = done.args
    assert job.title == f"Variations of {source.name}" and outcome.result.model.family == "unclip"
    assert len(outcome.paths) == 2 and studio.gallery.model.rowCount() == 3
    seeds = set()
    for path in outcome.paths:
        meta = read_metadata(path)
        assert meta.model_name == "unclip-tiny" and meta.extra["Noise level"] == "700"  # strong: 0.7 x 1000
        assert meta.fields["prompt"] == "a red kite" and Image.open(path).size == (64, 64)
        seeds.add(meta.fields["seed"])
    assert len(seeds) == 2 and 11 not in seeds
    images = [np.asarray(Image.open(p)) for p in outcome.paths]
    assert not np.array_equal(images[0], images[1])

    # From the canvas (Image › Variations…): one variation of what is on the canvas.
    studio.actions.document.set_image(Image.open(outcome.paths[0]).convert("RGB"), "a variation")
    dialog = w.show_variations_dialog()
    assert "the canvas" in dialog.heading.text()
    dialog.model_combo.setCurrentIndex(dialog.model_combo.findData(str(unclip)))
    dialog.count_spin.setValue(1)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000) as done:
        dialog.make_button.click()
    meta = read_metadata(done.args[1].paths[0])
    assert meta.model_name == "unclip-tiny" and meta.extra["Noise level"] == "350"  # subtle
    assert studio.gallery.model.rowCount() == 4

    # Picked in the prompt panel for a New image: Generate is off and the panel says why.
    panel = w.prompt_panel
    studio.params.edit_mode = "txt2img"
    _pick(studio, unclip)
    qtbot.waitUntil(lambda: not studio.actions.generate_enabled, timeout=10_000)
    assert not panel.generate_button.isEnabled() and panel.blocked_label.isVisible()
    assert "Stable unCLIP makes variations of an image" in panel.blocked_label.text()
    assert studio.actions.generate() is None and studio.gallery.model.rowCount() == 4

    # Image to image on the canvas is what it takes: the canvas image is varied, strength as noise level.
    studio.params.edit_mode = "img2img"
    studio.params.strength = 0.5
    qtbot.waitUntil(lambda: studio.actions.generate_enabled, timeout=10_000)
    assert not panel.blocked_label.isVisible()
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000) as done:
        panel.generate_button.click()
    assert done.args[1].result.model.family == "unclip"
    qtbot.waitUntil(lambda: bool(studio.actions.document.candidates), timeout=10_000)
    assert read_metadata(done.args[1].paths[0]).extra["Noise level"] == "500"


# -- 4. aMUSEd text-to-image from the prompt panel ---------------------------------------------------


def test_amused_text_to_image_from_the_prompt_panel(make_studio, data_dir, family_models, qtbot):
    amused = _install(data_dir, family_models / "amused-tiny-256")
    studio = make_studio(data_dir)
    qtbot.waitUntil(lambda: studio.catalog.find(str(amused)) is not None, timeout=30_000)
    panel, p = studio.window.prompt_panel, studio.params
    _pick(studio, amused)
    assert (p.width, p.height, p.steps, p.guidance_scale) == (256, 256, 12, 10.0)
    assert panel.model_kind_label.text() == "aMUSEd token transformer" and not panel.sampler_combo.isEnabled()
    qtbot.waitUntil(lambda: studio.actions.generate_enabled, timeout=10_000)
    panel.steps_spin.setValue(4)
    p.prompt, p.seed_mode, p.seed = "a paper lantern", "fixed", 8
    with qtbot.waitSignal(studio.queue.job_finished, timeout=120_000) as done:
        panel.generate_button.click()
    job, outcome = done.args
    assert job.request.mode.value == "txt2img" and outcome.result.model.family == "amused"
    assert studio.gallery.model.rowCount() == 1 and studio.gallery.current.name == outcome.paths[0].name
    with Image.open(outcome.paths[0]) as png:
        assert png.size == (256, 256)
        params = png.text["parameters"]
        assert np.asarray(png.convert("RGB")).std() > 5  # not a blank image
    assert params.startswith("a paper lantern\n") and "Steps: 4" in params and "Seed: 8" in params
    assert "Model: amused-tiny-256" in params

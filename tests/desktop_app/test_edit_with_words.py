"""The canvas's "Edit with words" with an instruction-edit model (FLUX.1 Kontext), and FLUX.1 Fill
standing in for FLUX.1 [dev] when inpainting, on the real engine thread with tiny random-weight models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.ui.prompt_panel import INSTRUCTION_PLACEHOLDER, PROMPT_PLACEHOLDER
from engine.metadata import read_metadata
from tests.desktop_app.conftest import screenshot


@pytest.fixture(scope="module")
def flux_library(tmp_path_factory) -> dict[str, Path]:
    from engine.cli import main

    root = tmp_path_factory.mktemp("flux-words")
    for name in ("flux1-kontext", "flux1-dev", "flux1-fill"):
        assert main(["make-test-model", str(root / name), "--family", name]) == 0
    return {name: root / name for name in ("flux1-kontext", "flux1-dev", "flux1-fill")}


def _studio(make_studio, data_dir, flux_library, qtbot):
    studio = make_studio(data_dir)
    assert studio.bridge.state == "ready", studio.bridge.error
    studio.actions.add_model_folder(str(next(iter(flux_library.values())).parent))
    for path in flux_library.values():
        qtbot.waitUntil(lambda path=path: studio.catalog.find(str(path)) is not None, timeout=30_000)
    return studio


def _photo(size=(80, 48)) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _modes(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_edit_with_words_on_a_kontext_model_edits_the_canvas_by_instruction(make_studio, data_dir, flux_library, qtbot):
    studio = _studio(make_studio, data_dir, flux_library, qtbot)
    w, p, doc, canvas = studio.window, studio.params, studio.actions.document, studio.actions.canvas
    bar, panel = w.canvas_panel.edit_settings, w.prompt_panel
    canvas.load(_photo(), "photo.png")

    p.model = str(flux_library["flux1-dev"])  # not an instruction editor: the mode is not offered
    assert "Edit with words" not in _modes(bar.mode_combo)
    p.model = str(flux_library["flux1-kontext"])
    assert _modes(bar.mode_combo)[-1] == "Edit with words"
    p.steps, p.seed_mode, p.seed = 2, "fixed", 3
    bar.mode_combo.setCurrentIndex(bar.mode_combo.findText("Edit with words"))
    assert p.edit_mode == "instruct"
    assert panel.prompt_edit.placeholderText() == INSTRUCTION_PLACEHOLDER
    assert not bar.strength_spin.isEnabled()
    assert not studio.actions.generate_enabled and "say what to change" in panel.blocked_label.text()
    screenshot(w, "edit_with_words_instruction.png")
    p.prompt = "make the sky stormy"
    assert studio.actions.generate_enabled, studio.actions.generate_blocked_reason

    before = np.asarray(doc.image_pil()).copy()
    with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000):
        studio.actions.generate()
    assert len(doc.candidates) == 1  # the edit comes back over the canvas, to accept or discard
    candidate = doc.current_candidate()
    assert candidate.image.size().toTuple() == (80, 48)
    meta = read_metadata(candidate.path)
    assert (meta.fields["prompt"], meta.fields["mode"]) == ("make the sky stormy", "img2img")
    assert meta.model_name == "flux1-kontext"
    assert "edits the whole 80×48 canvas as the prompt says" in bar.hint.text()
    screenshot(w, "edit_with_words.png")
    canvas.accept()
    assert not np.array_equal(np.asarray(doc.image_pil()), before)
    doc.undo_stack.undo()
    assert np.array_equal(np.asarray(doc.image_pil()), before)

    # A painted mask keeps the edit inside it.
    doc.fill_rect((20, 8, 52, 40))
    mask = doc.mask.copy()
    assert "edits the masked part of the 80×48 canvas" in bar.hint.text()
    p.mask_blur = 0
    with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000):
        studio.actions.generate()
    edited = np.asarray(Image.open(doc.current_candidate().path).convert("RGB")).astype(int)
    keep = mask == 0
    assert np.array_equal(edited[keep], before.astype(int)[keep])
    assert not np.array_equal(edited[~keep], before.astype(int)[~keep])
    canvas.discard()

    # A model that does not edit by instruction: the mode goes away, Generate goes back to inpaint (a mask
    # is painted), and the status says why.
    p.model = str(flux_library["flux1-dev"])
    assert p.edit_mode == "inpaint" and "Edit with words" not in _modes(bar.mode_combo)
    assert "not an instruction-edit model: use FLUX.1 Kontext" in studio.status.activity
    assert panel.prompt_edit.placeholderText() == PROMPT_PLACEHOLDER


def test_inpaint_with_flux_dev_uses_the_fill_model_of_the_library(make_studio, data_dir, flux_library, qtbot):
    studio = _studio(make_studio, data_dir, flux_library, qtbot)
    p, doc, canvas = studio.params, studio.actions.document, studio.actions.canvas
    notices: list[str] = []
    studio.reporter.notice_posted.connect(notices.append)
    canvas.load(_photo((64, 64)), "photo.png")
    p.model, p.prompt, p.steps, p.seed_mode, p.seed = str(flux_library["flux1-dev"]), "a fox", 2, "fixed", 1
    p.edit_mode, p.only_masked, p.mask_blur = "inpaint", False, 0
    doc.fill_rect((16, 16, 48, 48))
    with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000):
        job = studio.actions.generate()
        assert job.request.model == str(flux_library["flux1-fill"]) and job.request.guidance_scale == 30.0
    assert any("Inpainting with flux1-fill (FLUX.1 Fill [dev]) instead of flux1-dev" in n for n in notices)
    meta = read_metadata(doc.current_candidate().path)
    assert meta.model_name == "flux1-fill" and meta.fields["guidance_scale"] == 30.0
    canvas.discard()

    # Image to image stays on the picked model (Fill does only inpaint / outpaint).
    p.edit_mode = "img2img"
    with qtbot.waitSignal(studio.queue.job_finished, timeout=180_000):
        job = studio.actions.generate()
        assert job.request.model == str(flux_library["flux1-dev"])

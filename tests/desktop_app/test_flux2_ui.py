"""FLUX.2 [klein] in the window: picking a distilled or base model applies its defaults and greys out
what it does not take (sampler; CFG and negative prompt for the distilled one) with the reason, from
capabilities."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.desktop_app.conftest import screenshot


@pytest.fixture(scope="module")
def klein_models(tmp_path_factory) -> dict[str, Path]:
    from engine.cli import main

    root = tmp_path_factory.mktemp("flux2-ui")
    for name in ("flux2-klein", "flux2-klein-base"):
        assert main(["make-test-model", str(root / name), "--family", name]) == 0
    return {name: root / name for name in ("flux2-klein", "flux2-klein-base")}


def test_picking_klein_applies_its_defaults_and_disables_what_it_does_not_take(
        make_studio, data_dir, fake_engine, klein_models, qtbot):
    models = data_dir / "models"
    for name, folder in klein_models.items():
        shutil.copytree(folder, models / name)
    distilled, base = models / "flux2-klein", models / "flux2-klein-base"
    studio = make_studio(data_dir, fake_engine)
    studio.actions.rescan_models()
    for path in (distilled, base):
        qtbot.waitUntil(lambda path=path: studio.catalog.find(str(path)) is not None, timeout=30_000)
    panel, p = studio.window.prompt_panel, studio.params
    combo = panel.model_combo

    combo.setCurrentIndex(combo.findData(str(distilled)))
    assert (p.width, p.height, p.steps, p.guidance_scale) == (1024, 1024, 4, 1.0)
    assert panel.model_kind_label.text() == "FLUX.2 [klein]"
    assert not panel.cfg_spin.isEnabled() and "without CFG" in panel.cfg_spin.toolTip()
    assert not panel.negative_edit.isEnabled() and "no effect" in panel.negative_edit.toolTip()
    assert not panel.sampler_combo.isEnabled() and "flow-matching" in panel.sampler_combo.toolTip()
    screenshot(studio.window, "prompt-panel-flux2-klein.png")

    combo.setCurrentIndex(combo.findData(str(base)))
    assert (p.steps, p.guidance_scale) == (50, 4.0)
    assert panel.model_kind_label.text() == "FLUX.2 [klein] Base"
    assert panel.cfg_spin.isEnabled() and panel.negative_edit.isEnabled() and not panel.sampler_combo.isEnabled()
    screenshot(studio.window, "prompt-panel-flux2-klein-base.png")


def test_picking_dev_applies_its_defaults_and_disables_the_negative_prompt_and_inpainting(
        make_studio, data_dir, fake_engine, tmp_path_factory, qtbot):
    from engine.cli import main

    dev = data_dir / "models" / "flux2-dev"
    assert main(["make-test-model", str(dev), "--family", "flux2-dev"]) == 0
    studio = make_studio(data_dir, fake_engine)
    studio.actions.rescan_models()
    qtbot.waitUntil(lambda: studio.catalog.find(str(dev)) is not None, timeout=30_000)
    panel, p = studio.window.prompt_panel, studio.params
    panel.model_combo.setCurrentIndex(panel.model_combo.findData(str(dev)))
    assert (p.width, p.height, p.steps, p.guidance_scale) == (1024, 1024, 28, 4.0)
    assert panel.model_kind_label.text() == "FLUX.2 [dev]"
    assert panel.cfg_spin.isEnabled()  # its distilled guidance
    assert not panel.negative_edit.isEnabled() and "guidance-distilled" in panel.negative_edit.toolTip()
    assert not panel.sampler_combo.isEnabled()
    p.edit_mode = "inpaint"
    qtbot.waitUntil(lambda: not studio.actions.generate_enabled)
    assert "FLUX.2 [dev] has no inpainting pipeline" in panel.blocked_label.text()
    screenshot(studio.window, "prompt-panel-flux2-dev.png")

"""SD 3.5 in the window: picking a Large Turbo or Medium folder applies its defaults and disables what
it does not take, with the reason in the tooltip (fake engine: no generation needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.desktop_app.conftest import screenshot


@pytest.fixture(scope="module")
def sd3_models(tmp_path_factory) -> dict[str, Path]:
    from engine.families.sd3.testmodel import make_sd3_test_model

    root = tmp_path_factory.mktemp("sd3-ui")
    return {name: make_sd3_test_model(root / name, name) for name in ("sd35-large-turbo", "sd35-medium")}


def test_picking_sd35_turbo_or_medium_applies_its_defaults_and_disables_the_rest(
        make_studio, data_dir, fake_engine, sd3_models, qtbot):
    import shutil

    models = data_dir / "models"
    turbo, medium = models / "sd3.5-large-turbo", models / "sd3.5-medium"
    shutil.copytree(sd3_models["sd35-large-turbo"], turbo)
    shutil.copytree(sd3_models["sd35-medium"], medium)
    studio = make_studio(data_dir, fake_engine)
    studio.actions.rescan_models()
    for path in (turbo, medium):
        qtbot.waitUntil(lambda path=path: studio.catalog.find(str(path)) is not None, timeout=30_000)
    panel, p = studio.window.prompt_panel, studio.params
    combo = panel.model_combo

    combo.setCurrentIndex(combo.findData(str(turbo)))
    assert (p.width, p.height, p.steps, p.guidance_scale) == (1024, 1024, 4, 0.0)
    assert not panel.cfg_spin.isEnabled() and "without CFG" in panel.cfg_spin.toolTip()
    assert not panel.negative_edit.isEnabled() and "negative prompt" in panel.negative_edit.toolTip()
    assert not panel.sampler_combo.isEnabled() and "flow-matching" in panel.sampler_combo.toolTip()
    assert panel.model_kind_label.text() == "SD 3.5 Large Turbo (4 steps)"
    screenshot(studio.window, "prompt-panel-sd35-turbo.png")

    combo.setCurrentIndex(combo.findData(str(medium)))
    assert (p.steps, p.guidance_scale) == (40, 4.5)
    assert panel.cfg_spin.isEnabled() and panel.negative_edit.isEnabled()
    assert not panel.sampler_combo.isEnabled()
    assert panel.model_kind_label.text() == "SD 3.5 Medium"

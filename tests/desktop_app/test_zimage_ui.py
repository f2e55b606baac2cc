"""Picking a Z-Image model in the window: Turbo greys out what it does not take (CFG, the negative
prompt, the sampler), each with its reason, and starts from its own steps; Base keeps CFG on."""

from __future__ import annotations

from tests.desktop_app.conftest import screenshot


def test_z_image_turbo_and_base_in_the_prompt_panel(make_studio, data_dir, fake_engine, qtbot):
    from engine import families

    models = data_dir / "models"
    turbo = families.test_models()["zimage-turbo"][1].write(models / "Z-Image-Turbo-tiny", "diffusers")
    base = families.test_models()["zimage"][1].write(models / "Z-Image-tiny", "diffusers")
    studio = make_studio(data_dir, fake_engine)
    panel = studio.window.prompt_panel
    qtbot.waitUntil(lambda: studio.actions.catalog.find(str(turbo)) is not None, timeout=30_000)

    studio.params.model = str(turbo)
    qtbot.waitUntil(lambda: not panel.cfg_spin.isEnabled(), timeout=10_000)
    assert not panel.negative_edit.isEnabled() and not panel.sampler_combo.isEnabled()
    assert "without CFG" in panel.cfg_spin.toolTip()
    assert "flow-matching" in panel.sampler_combo.toolTip()
    assert panel.steps_spin.isEnabled() and panel.width_spin.isEnabled()
    assert "Z-Image Turbo" in panel.model_kind_label.text()
    screenshot(panel, "prompt-panel-zimage-turbo.png")

    studio.params.model = str(base)
    qtbot.waitUntil(lambda: panel.cfg_spin.isEnabled(), timeout=10_000)
    assert panel.negative_edit.isEnabled() and not panel.sampler_combo.isEnabled()

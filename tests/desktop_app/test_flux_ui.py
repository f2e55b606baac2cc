"""FLUX.1 in the window: picking a [dev] or [schnell] model applies its defaults and greys out what it
does not take (negative prompt, sampler; guidance for [schnell]) with the reason, from capabilities."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.desktop_app.conftest import screenshot


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory) -> dict[str, Path]:
    from engine.cli import main

    root = tmp_path_factory.mktemp("flux-ui")
    for name in ("flux1-dev", "flux1-schnell"):
        assert main(["make-test-model", str(root / name), "--family", name]) == 0
    return {name: root / name for name in ("flux1-dev", "flux1-schnell")}


def test_picking_flux_applies_its_defaults_and_disables_what_it_does_not_take(
        make_studio, data_dir, fake_engine, flux_models, qtbot):
    models = data_dir / "models"
    for name, folder in flux_models.items():
        shutil.copytree(folder, models / name)
    dev, schnell = models / "flux1-dev", models / "flux1-schnell"
    studio = make_studio(data_dir, fake_engine)
    studio.actions.rescan_models()
    for path in (dev, schnell):
        qtbot.waitUntil(lambda path=path: studio.catalog.find(str(path)) is not None, timeout=30_000)
    panel, p = studio.window.prompt_panel, studio.params
    combo = panel.model_combo

    combo.setCurrentIndex(combo.findData(str(schnell)))
    assert (p.width, p.height, p.steps, p.guidance_scale) == (1024, 1024, 4, 0.0)
    assert not panel.negative_edit.isEnabled() and "guidance-distilled" in panel.negative_edit.toolTip()
    assert not panel.sampler_combo.isEnabled() and "flow-matching" in panel.sampler_combo.toolTip()
    assert not panel.cfg_spin.isEnabled() and "without guidance" in panel.cfg_spin.toolTip()
    assert panel.model_kind_label.text() == "FLUX.1 [schnell]"
    assert panel.lora_picker.isEnabled() and "<lora:name:0.8>" in panel.lora_picker.toolTip()  # FLUX takes LoRAs
    screenshot(studio.window, "prompt-panel-flux-schnell.png")

    combo.setCurrentIndex(combo.findData(str(dev)))
    assert (p.steps, p.guidance_scale) == (28, 3.5)
    assert panel.cfg_spin.isEnabled() and not panel.negative_edit.isEnabled()

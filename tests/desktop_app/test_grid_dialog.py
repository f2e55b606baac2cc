"""Batch / grid… in the window: a grid through the normal queue on the real engine, into the gallery, and
the farm options hidden with a hint when Ray is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from engine.grid import read_recipe
from tests.desktop_app.conftest import screenshot


def test_grid_dialog_runs_a_2x2_grid_through_the_queue_into_the_gallery(make_studio, data_dir, tiny_models, qtbot):
    model = tiny_models.get("sd15")
    studio = make_studio(data_dir)
    studio.actions.add_model_folder(str(model.parent))
    qtbot.waitUntil(lambda: any(m.path == str(model) and m.usable for m in studio.catalog.models), timeout=30_000)
    p = studio.params
    p.model, p.prompt, p.width, p.height, p.steps, p.seed_mode, p.seed = str(model), "a dune", 64, 64, 2, "fixed", 7
    dialog = studio.window.show_grid_dialog()
    dialog.axis_combos[0].setCurrentIndex(dialog.axis_combos[0].findData("seed"))
    dialog.value_edits[0].setText("7,8")
    dialog.axis_combos[1].setCurrentIndex(dialog.axis_combos[1].findData("cfg"))
    dialog.value_edits[1].setText("3,6")
    assert "4 image(s)" in dialog.summary_label.text()
    screenshot(dialog, "grid-dialog.png")
    batch = dialog.submit()
    assert batch is not None and len(studio.queue.jobs()) >= 3  # the cells wait in the normal queue
    with qtbot.waitSignal(batch.finished, timeout=180_000) as finished:
        pass
    grid_path = Path(finished.args[0])
    assert grid_path.parent == data_dir / "outputs" and read_recipe(grid_path)["axes"][:2] == ["seed=7,8", "cfg=3,6"]
    qtbot.waitUntil(lambda: studio.gallery.model.rowCount() == 5, timeout=30_000)
    seeds = sorted(Image.open(p).text["parameters"].split("Seed: ")[1].split(",")[0]
                   for ps in batch.run.paths.values() for p in ps)
    assert seeds == ["7", "7", "8", "8"]
    assert "Done: 4 image(s)" in dialog.status_label.text()
    screenshot(dialog, "grid-dialog-done.png")


def test_farm_choices_are_hidden_with_a_one_line_hint_without_ray(make_studio, data_dir, qtbot, monkeypatch,
                                                                   fake_engine):
    import desktop_app.state.grid_batch as grid_batch

    monkeypatch.setattr(grid_batch, "ray_available", lambda: False)  # as on an install without the farm extra
    studio = make_studio(data_dir, fake_engine)
    dialog = studio.window.show_grid_dialog()
    assert not dialog.farm_radio.isVisibleTo(dialog) and not dialog.address_radio.isVisibleTo(dialog)
    assert dialog.farm_hint_label.isVisibleTo(dialog) and "pip install" in dialog.farm_hint_label.text()
    assert "\n" not in dialog.farm_hint_label.text()


@pytest.mark.slow  # a Ray cluster and an actor of its own: ~45 s on 2 cores (the farm's own tests run by default)
def test_grid_dialog_runs_the_same_grid_on_a_local_ray_farm(make_studio, data_dir, tiny_models, qtbot):
    from engine.farm import ray_available

    if not ray_available():
        pytest.skip('Ray is not installed (pip install -e ".[farm]")')
    model = tiny_models.get("sd15")
    studio = make_studio(data_dir)
    p = studio.params
    p.model, p.prompt, p.width, p.height, p.steps, p.seed_mode, p.seed = str(model), "a reef", 64, 64, 2, "fixed", 1
    dialog = studio.window.show_grid_dialog()
    dialog.axis_combos[0].setCurrentIndex(dialog.axis_combos[0].findData("seed"))
    dialog.value_edits[0].setText("1,2")
    dialog.axis_combos[1].setCurrentIndex(0)
    dialog.farm_radio.setChecked(True)
    batch = dialog.submit()
    assert batch is not None and not studio.queue.jobs()  # the farm, not the local queue
    with qtbot.waitSignal(batch.finished, timeout=240_000) as finished:
        pass
    assert finished.args[0] and len(batch.run.paths) == 2 and not batch.run.failures
    qtbot.waitUntil(lambda: studio.gallery.model.rowCount() == 3, timeout=30_000)

"""Settings › Engine › "Use the engine on a cluster": the window's bridge drives an Engine actor on a local
Ray cluster: same requests, progress with previews streamed back, cancel within a step, results saved here."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from desktop_app.state.cluster import ClusterSetting, load_cluster_setting, save_cluster_setting
from engine.farm import ray_available

pytestmark = pytest.mark.skipif(not ray_available(), reason='Ray is not installed (pip install -e ".[farm]")')


@pytest.mark.slow  # a Ray cluster and an actor of its own: ~60 s on 2 cores
def test_window_generates_and_cancels_through_an_engine_actor(make_studio, data_dir, tiny_models, qtbot):
    model = tiny_models.get("sd15")
    save_cluster_setting(data_dir, ClusterSetting(enabled=True))
    assert load_cluster_setting(data_dir).enabled
    studio = make_studio(data_dir)
    from engine.farm.remote import RemoteEngine

    assert isinstance(studio.bridge._engine, RemoteEngine)
    studio.actions.add_model_folder(str(model.parent))
    qtbot.waitUntil(lambda: any(m.path == str(model) and m.usable for m in studio.catalog.models), timeout=30_000)
    p = studio.params
    p.model, p.prompt, p.width, p.height, p.steps, p.seed_mode, p.seed = str(model), "a moth", 64, 64, 4, "fixed", 5
    previews, steps = [], []
    studio.queue.preview_changed.connect(previews.append)
    studio.queue.job_progressed.connect(lambda job, info: steps.append(info.step))
    failures, outcomes = [], []
    studio.queue.job_failed.connect(lambda job, message: failures.append(message))
    studio.queue.job_finished.connect(lambda job, outcome: outcomes.append(outcome))
    with qtbot.waitSignal(studio.queue.job_removed, timeout=240_000):
        job = studio.actions.generate()
    assert not failures and job.status.value == "done"
    outcome = outcomes[0]
    assert previews and steps[-1] == 4
    assert len(outcome.paths) == 1 and outcome.paths[0].parent == data_dir / "outputs"
    with Image.open(outcome.paths[0]) as png:
        assert "Seed: 5" in png.text["parameters"] and "Steps: 4" in png.text["parameters"]
    assert studio.gallery.model.rowCount() == 1

    p.steps = 60
    stepped = threading.Event()
    studio.queue.job_progressed.connect(lambda job, info: info.step >= 2 and stepped.set())
    job = studio.actions.generate()
    qtbot.waitUntil(stepped.is_set, timeout=60_000)
    with qtbot.waitSignal(studio.queue.job_cancelled, timeout=30_000):
        studio.actions.cancel_current()
    assert job.status.value == "cancelled"
    assert len(list((data_dir / "outputs").glob("*.png"))) == 1

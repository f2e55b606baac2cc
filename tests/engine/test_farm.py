"""The farm on a real local Ray cluster: two CPU worker actors, tiny models. One cluster (and one Farm)
for the whole session; faults are injected for real (``ray.kill`` of a worker mid-job)."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path

import pytest

from engine.api import GenerationRequest
from engine.farm import ray_available
from engine.grid import GridRun, SilentEvents, parse_axis, plan_grid
from engine.library import Library
from engine.metadata import read_metadata

pytestmark = pytest.mark.skipif(not ray_available(), reason='Ray is not installed (pip install -e ".[farm]")')


@pytest.fixture(scope="session")
def farm_models(tmp_path_factory, tiny_models):
    """Model A in both workers' folders, model B only in worker 2's, model C in neither."""
    from engine.testmodels import make_test_model

    shared = tiny_models.get("sd15")
    only_b = tmp_path_factory.mktemp("worker2-models")
    b = Path(make_test_model(only_b / "model-b", family="sd15", seed=1))
    c = Path(make_test_model(tmp_path_factory.mktemp("nobody") / "model-c", family="sd15", seed=2))
    return {"a": shared, "b": b, "c": c, "folders": [[str(shared.parent)], [str(shared.parent), str(only_b)]]}


@pytest.fixture(scope="session")
def farm(farm_models, tmp_path_factory):
    from engine.farm.farm import Farm

    f = Farm(workers=2, worker_folders=farm_models["folders"], device="cpu",
             data_dir=tmp_path_factory.mktemp("farm-data"), include_defaults=False)
    yield f
    f.close()  # stops the workers and the local cluster this Farm started


class Recorder(SilentEvents):
    def __init__(self):
        self.started: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.failed: dict[str, str] = {}
        self.on_progress = None
        self.on_finished = None

    def job_started(self, job, worker):
        self.started.append((job.id, worker))

    def job_progressed(self, job, step, total):
        if self.on_progress:
            self.on_progress(job, step)

    def job_finished(self, job, paths):
        if self.on_finished:
            self.on_finished(job)

    def job_failed(self, job, message):
        self.failed[job.id] = message

    def note(self, line):
        self.notes.append(line)


def request(model, **kw):
    fields = dict(prompt="a harbour at dawn", model=str(model), steps=2, width=64, height=64, seed=1)
    fields.update(kw)
    return GenerationRequest(**fields)


def test_a_2x3_grid_on_the_farm_fills_the_gallery_with_six_images_and_the_grid(farm, farm_models, tmp_path):
    plan = plan_grid(request(farm_models["a"]), parse_axis("cfg=2,6"), parse_axis("seed=1,2,3"))
    events = Recorder()
    with Library(tmp_path / "gallery") as gallery:
        run = GridRun(plan, library=gallery, events=events)
        farm.run(plan, run)
        grid = run.finish()
        entries = gallery.query()
    assert len(entries) == 7 and grid.name in {e.path for e in entries}
    assert len({w for _, w in events.started}) == 2  # both workers took jobs
    for job in plan.jobs:
        (path,) = run.paths[job.id]
        meta = read_metadata(path)
        assert meta.fields["seed"] == job.request.seed and meta.fields["guidance_scale"] == job.request.guidance_scale
        assert meta.extra["Grid job"] == job.id and meta.model_name


def test_a_worker_killed_mid_job_its_job_runs_elsewhere_and_nothing_is_saved_twice(farm, farm_models, tmp_path):
    import ray

    plan = plan_grid(request(farm_models["a"], steps=4), parse_axis("seed=1-6"))
    events = Recorder()
    killed: list[str] = []

    def kill_once(job, step):
        if not killed:
            worker = next(w for w in farm.workers if w.job is not None and w.job.id == job.id)
            killed.append(job.id)
            ray.kill(worker.actor)

    events.on_progress = kill_once
    with Library(tmp_path / "gallery") as gallery:
        run = GridRun(plan, library=gallery, events=events)
        farm.run(plan, run)
        entries = gallery.query()
    assert killed and len(run.paths) == 6 and not run.failures
    assert len(entries) == 6 and len({e.path for e in entries}) == 6
    assert sum(1 for job_id, _ in events.started if job_id == killed[0]) == 2  # ran again
    assert any("running it again" in n for n in events.notes)
    assert sum(w.alive for w in farm.workers) == 2  # the dead worker was replaced


def test_cancel_mid_batch_starts_nothing_new_and_keeps_what_finished(farm, farm_models, tmp_path):
    plan = plan_grid(request(farm_models["a"], steps=3), parse_axis("seed=1-8"))
    events = Recorder()
    cancel = threading.Event()
    started_at_cancel: list[int] = []

    def cancel_after_two(job):
        if len(started_at_cancel) == 0 and sum(1 for _ in run.paths) >= 2:
            started_at_cancel.append(len(events.started))
            cancel.set()

    events.on_finished = cancel_after_two
    run = GridRun(plan, out=tmp_path, events=events)
    farm.run(plan, run, cancel)
    assert started_at_cancel and len(events.started) == started_at_cancel[0]  # nothing started after cancel
    assert 2 <= len(run.paths) < 8 and len(run.cancelled) >= 8 - len(events.started)
    assert len(list(tmp_path.glob("*.png"))) == len(run.paths)
    assert run.finish() is not None  # the grid of what finished


def test_a_model_missing_on_a_worker_is_reported_once_and_its_jobs_run_where_it_is(farm, farm_models, tmp_path):
    models = [farm_models[k] for k in ("a", "b", "c")]
    plan = plan_grid(request(models[0]), parse_axis("model=" + ",".join(map(str, models))), parse_axis("seed=1,2"))
    events = Recorder()
    run = GridRun(plan, out=tmp_path, events=events)
    farm.run(plan, run)
    about_b = [n for n in events.notes if "model-b" in n]
    about_c = [n for n in events.notes if "model-c" in n]
    assert len(about_b) == 1 and "worker" in about_b[0] and "other workers" in about_b[0]
    assert len(about_c) == 1 and "no worker" in about_c[0]
    done_models = {Path(j.request.model).name for j in plan.jobs if run.paths.get(j.id)}
    assert done_models == {"sd15", "model-b"}
    failed = [j for j in plan.jobs if j.id in run.failures]
    assert len(failed) == 2 and all("model-c" in run.failures[j.id] for j in failed)
    assert sum(1 for job_id, _ in events.started if job_id in run.failures) == 0  # failed alone, not tried


def test_the_local_cluster_listens_on_loopback_only_and_its_workers_are_not_deprioritised(farm):
    import psutil
    import ray

    node = ray._private.worker._global_node
    pids = {info.process.pid for infos in node.all_processes.values() for info in infos if info.process}
    pids |= {w["pid"] for w in farm.describe()} | {__import__("os").getpid()}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert listening, "no Ray server socket found"

    def loopback(ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return (getattr(address, "ipv4_mapped", None) or address).is_loopback

    assert all(loopback(c.laddr.ip) for c in listening), [(c.pid, c.laddr) for c in listening if not loopback(c.laddr.ip)]
    assert all(psutil.Process(w["pid"]).nice() == 0 for w in farm.describe())  # Ray's default would be 15

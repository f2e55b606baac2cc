"""The Farm: Engine actors on a Ray cluster, and the scheduler that runs a grid's jobs on them.

Jobs go to idle workers that have the job's model (found by content hash in each worker's folders);
results stream back as they finish and are saved by the driver (``engine.grid.GridRun``, once per job id).
A worker that dies mid-job is replaced and the job runs again elsewhere (at most ``MAX_ATTEMPTS`` times);
a job that fails for a user reason fails alone; cancel stops scheduling and cancels running jobs within
one step; the head node lost stops the batch with one line, keeping what finished.

Every method runs on the thread that drives the farm (the CLI's main thread, the app's farm thread).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from engine.farm import FarmError
from engine.farm import cluster
from engine.grid import GridJob, GridPlan, GridRun

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a job whose worker died runs at most this many times in all
START_TIMEOUT = 120.0  # seconds a replacement worker may take to answer before the cluster counts as lost
_POLL_SECONDS = 0.1
HEAD_CHECK_SECONDS = 5.0  # how often a joined cluster's head is asked whether it is still there


@dataclass
class Worker:
    """A driver-side handle on one EngineWorker actor."""

    index: int
    actor: object
    name: str
    folders: list[str]
    alive: bool = True
    job: GridJob | None = None
    has: set[str] = field(default_factory=set)  # model hashes it was asked about and has
    lacks: set[str] = field(default_factory=set)
    probe: object = None  # a pending find_models reply (a worker started mid-batch)
    started: float = field(default_factory=time.monotonic)


class Farm:
    """Engine actors on the cluster at ``address`` (None: a local cluster, started on demand, loopback only).

    ``workers``: how many (default: one per GPU of the cluster; on a cluster without GPUs, one per 2 CPUs,
    at least one). ``folders``: model folders every worker searches besides its node's own.
    ``worker_folders``: per-worker folder lists instead (a worker without an entry gets ``folders``).
    ``data_dir``: the workers' data folder (model folder settings and caches); None: each node's own.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None, folders: list[str] | None = None,
                 worker_folders: list[list[str]] | None = None, device: str | None = None,
                 data_dir: str | os.PathLike[str] | None = None, include_defaults: bool = True):
        self.address = address
        self._owns_cluster = cluster.connect(address)
        import ray

        self._ray = ray
        node_list = cluster.nodes()
        self._use_gpu = device != "cpu" and any(gpus for _nid, _cpus, gpus in node_list)
        # Each worker is placed on one node and asks only for what that node has: on CPU an equal share
        # of that node's cores for torch's threads (Ray would give it one).
        self._plan = cluster.plan_workers(node_list, workers, use_gpu=self._use_gpu)
        if not self._plan:
            raise FarmError("the Ray cluster has no live node to run workers on")
        self._device = device
        self._data_dir = str(data_dir) if data_dir else None
        self._include_defaults = include_defaults
        self._folders = list(folders or [])
        self._worker_folders = worker_folders or []
        self.workers: list[Worker] = []
        self._next_index = 0
        for _ in self._plan:
            self._spawn(len(self.workers))

    # -- workers ----------------------------------------------------------------------------------

    def _spawn(self, slot: int) -> Worker:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from engine.farm.worker import EngineWorker

        self._next_index += 1
        folders = self._worker_folders[slot] if slot < len(self._worker_folders) else self._folders
        name = f"worker {self._next_index}"
        node, cpus, gpus = self._plan[slot]
        options = {"num_gpus": gpus} if self._use_gpu else {"num_cpus": cpus}
        # Its planned node, or (soft) any node with room if that one is gone: a replacement still starts.
        where = NodeAffinitySchedulingStrategy(node_id=node, soft=True)
        threads = None if self._use_gpu else cpus
        actor = self._ray.remote(EngineWorker).options(max_concurrency=2, max_restarts=0, scheduling_strategy=where,
                                                       **options).remote(
            name, folders, device=None if self._use_gpu else (self._device or "cpu"), data_dir=self._data_dir,
            include_defaults=self._include_defaults, threads=threads)
        worker = Worker(self._next_index, actor, name, folders)
        if slot < len(self.workers):
            self.workers[slot] = worker
        else:
            self.workers.append(worker)
        return worker

    def replace_dead(self) -> int:
        """Start a new worker in the place of each dead one; returns how many were replaced."""
        dead = [i for i, w in enumerate(self.workers) if not w.alive]
        for slot in dead:
            self._spawn(slot)
        return len(dead)

    def describe(self) -> list[dict]:
        """Each live worker's name, host, pid and device (waits for the workers to start, at most
        ``START_TIMEOUT`` seconds: then FarmError, one line)."""
        try:
            return self._ray.get([w.actor.describe.remote() for w in self.workers if w.alive], timeout=START_TIMEOUT)
        except self._ray.exceptions.GetTimeoutError:
            raise FarmError(f"the farm's workers did not start within {START_TIMEOUT:.0f} s: the cluster may be busy "
                            "or have no room for them (see `ray status`)") from None

    def close(self) -> None:
        """Stop the workers, and the local cluster if this Farm started it."""
        for w in self.workers:
            try:
                self._ray.kill(w.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.workers = []
        if self._owns_cluster:
            cluster.shutdown()

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- models -----------------------------------------------------------------------------------

    def locate(self, hashes: dict[str, str]) -> list[str]:
        """Ask every live worker which of ``hashes`` (sha256 -> model name) it has. Returns one line per model
        that some worker lacks, naming the workers."""
        ray = self._ray
        live = [w for w in self.workers if w.alive]
        refs = {w.index: w.actor.find_models.remote(list(hashes)) for w in live}
        for w in live:
            try:
                found = ray.get(refs[w.index])
            except ray.exceptions.RayActorError:
                w.alive = False
                continue
            w.has = {h for h, p in found.items() if p}
            w.lacks = {h for h, p in found.items() if not p}
        lines = []
        for digest, name in hashes.items():
            lacking = [w.name for w in self.workers if w.alive and digest in w.lacks]
            if lacking:
                everyone = len(lacking) == sum(w.alive for w in self.workers)
                tail = "no worker can run its jobs" if everyone else "its jobs run on the other workers"
                lines.append(f"model {name} (hash {digest[:10]}) is not in the model folders of "
                             f"{', '.join(lacking)}: {tail}")
        return lines

    # -- running ----------------------------------------------------------------------------------

    def run(self, plan: GridPlan, run: GridRun, cancel: threading.Event | None = None,
            model_hashes: dict[str, str] | None = None) -> None:
        """Run ``plan``'s jobs not yet finished in ``run`` on the workers, saving through ``run`` as results
        arrive. ``model_hashes``: model path -> sha256 (computed here when not given). Raises FarmError when
        the cluster is lost (what finished is saved already). Runs on the driving thread."""
        ray = self._ray
        cancel = cancel or threading.Event()
        self.replace_dead()
        hashes = dict(model_hashes or {})
        for job in plan.jobs:
            if job.request.model not in hashes:
                hashes[job.request.model] = _sha256(job.request.model)
        for line in self.locate({h: Path(p).name for p, h in hashes.items()}):
            run.events.note(line)
        pending: deque[tuple[GridJob, int]] = deque((j, 1) for j in plan.jobs if not run.finished(j.id))
        running: dict[object, tuple[GridJob, int, Worker]] = {}  # generator -> (job, attempt, worker)
        cancelling = False
        head_seen = time.monotonic()
        while pending or running:
            try:
                if time.monotonic() - head_seen > HEAD_CHECK_SECONDS:
                    head_seen = time.monotonic()
                    self._check_head()
                if cancel.is_set() and not cancelling:
                    cancelling = True
                    for job, _ in pending:
                        run.cancel(job)
                    pending.clear()
                    for job, _, worker in running.values():
                        worker.actor.cancel.remote(job.id)
                self._dispatch(pending, running, run, hashes)
                if not running:
                    continue
                ready, _ = ray.wait(list(running), num_returns=1, timeout=_POLL_SECONDS)
                for gen in ready:
                    self._take(gen, running, pending, run)
            except KeyboardInterrupt:
                cancel.set()
            except FarmError:
                raise
            except Exception as exc:  # the cluster itself failed (head lost): stop, keep what was saved
                if not _cluster_lost(ray, exc):
                    raise
                for job, _ in pending:
                    run.cancel(job)
                why = f": {exc}" if isinstance(exc, ConnectionError) and str(exc) else f" ({type(exc).__name__})"
                raise FarmError(f"lost the Ray cluster's head node{why}; the batch stopped and "
                                f"the {run.done} finished image(s) are kept") from None

    def _check_head(self) -> None:
        """Raise ConnectionError when a joined cluster's head no longer answers. Ray would end this process
        itself 60 s after its head goes, with no exception to catch, so the farm asks first."""
        if self.address and (why := cluster.unanswered(self.address, seconds=2.0)):
            raise ConnectionError(why)

    def _dispatch(self, pending, running, run: GridRun, hashes: dict[str, str]) -> None:
        ray = self._ray
        for w in self.workers:  # workers started mid-batch (replacements): learn what they have, without waiting
            if w.alive and not w.has and not w.lacks:
                if w.probe is None:
                    w.probe = w.actor.find_models.remote(list(set(hashes.values())))
                elif time.monotonic() - w.started > START_TIMEOUT and not any(
                        x.alive and (x.has or x.lacks) for x in self.workers):
                    # No worker answers and none can be started: the head node (GCS) is gone.
                    raise ConnectionError(f"no farm worker started within {START_TIMEOUT:.0f} s")
                elif ray.wait([w.probe], timeout=0)[0]:
                    try:
                        found = ray.get(w.probe)
                        w.has = {h for h, p in found.items() if p}
                        w.lacks = {h for h, p in found.items() if not p}
                    except ray.exceptions.RayActorError:
                        w.alive = False
                    w.probe = None
        idle = [w for w in self.workers if w.alive and w.job is None]
        for worker in idle:
            pick = next((item for item in pending if hashes[item[0].request.model] in worker.has), None)
            if pick is None:
                continue
            pending.remove(pick)
            job, attempt = pick
            gen = worker.actor.run.options(num_returns="streaming").remote(
                job.id, job.request.to_dict(), hashes[job.request.model])
            worker.job = job
            running[gen] = (job, attempt, worker)
            run.events.job_started(job, worker.name)
        # Jobs no live worker can run (their model is nowhere): they fail alone, with the reason.
        live = [w for w in self.workers if w.alive]
        for item in list(pending):
            digest = hashes[item[0].request.model]
            if live and all(digest in w.lacks for w in live):
                pending.remove(item)
                run.fail(item[0], f"no worker has the model {Path(item[0].request.model).name} "
                                  f"(hash {digest[:10]}) in its model folders")
        if not live and pending:
            raise FarmError("every farm worker has stopped; the batch stopped and the "
                            f"{run.done} finished image(s) are kept")

    def _take(self, gen, running, pending, run: GridRun) -> None:
        ray = self._ray
        job, attempt, worker = running[gen]
        try:
            event = ray.get(next(gen))
        except StopIteration:
            event = ("failed", "the worker ended the job without a result")
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.ObjectLostError) as exc:
            del running[gen]
            worker.alive, worker.job = False, None
            log.warning("%s died during %s: %s", worker.name, job.id, type(exc).__name__)
            if attempt < MAX_ATTEMPTS and not run.finished(job.id):
                pending.appendleft((job, attempt + 1))
                self._check_head()  # a worker's end may be its head's: a new one would block until Ray gives up
                run.events.note(f"{worker.name} stopped during a job ({job.describe(run.plan)}); "
                                f"running it again on another worker")
            else:
                run.fail(job, f"the job's worker stopped {attempt} times; not trying again")
                self._check_head()
            self.replace_dead()
            return
        except ray.exceptions.RayTaskError as exc:  # an Easel bug inside the worker: fail this job alone
            event = ("failed", f"internal error on {worker.name}: {str(exc.cause) or type(exc.cause).__name__}")
        kind = event[0]
        if kind == "progress":
            run.events.job_progressed(job, event[1], event[2])
            return
        del running[gen]
        worker.job = None
        if kind == "done":
            run.save(job, event[1])
        elif kind == "failed":
            run.fail(job, event[1])
        else:
            run.cancel(job)


def _sha256(model: str) -> str:
    from engine.models.hashes import HashCache

    try:
        return HashCache().sha256(model)
    except OSError as exc:
        raise FarmError(f"{model}: cannot read the model ({exc.strerror or exc})") from None


def _cluster_lost(ray, exc: Exception) -> bool:
    lost = (ConnectionError, ray.exceptions.RaySystemError, ray.exceptions.RpcError)
    return isinstance(exc, lost) or not ray.is_initialized()

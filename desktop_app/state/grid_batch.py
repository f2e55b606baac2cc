"""A batch / grid from the window: the plan's jobs run through the normal queue (this machine) or on the farm
(a Ray cluster), and the labelled grid image joins the gallery when they are done.

State only, no widgets. Signals are emitted on the GUI thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.api import EaselError
from engine.farm import RAY_MISSING_HINT, ray_available
from engine.grid import GridJob, GridPlan, GridRun

log = logging.getLogger(__name__)


class GridBatch(QObject):
    """One running grid. ``farm``: None runs on this machine through ``queue``; "" a local Ray cluster; else
    the address of one. ``progress_changed(done, total, line)`` after each job; ``finished(grid_path)`` at
    the end ("" when nothing was made); ``failed(message)`` when the batch could not run at all."""

    progress_changed = Signal(int, int, str)
    finished = Signal(str)
    failed = Signal(str)
    _farm_event = Signal(str, object, object)  # from the farm thread: kind, job, payload

    def __init__(self, plan: GridPlan, queue, gallery, bridge, *, farm: str | None = None,
                 folders: list[str] | None = None, data_dir: str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.plan = plan
        self._queue = queue
        self._gallery = gallery
        self._bridge = bridge
        self.farm = farm
        self._folders = list(folders or [])
        self._data_dir = data_dir
        self.run = GridRun(plan, out=Path(gallery.library.root), events=_ThreadEvents(self))
        self._jobs: dict[int, GridJob] = {}  # queue job id -> grid job
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._farm_event.connect(self._on_farm_event)

    @property
    def total(self) -> int:
        return len(self.plan.jobs)

    @property
    def accounted(self) -> int:
        return len(self.run.paths) + len(self.run.failures) + len(self.run.cancelled)

    def start(self) -> None:
        """Queue the jobs (this machine) or start the farm thread."""
        if self.farm is None:
            self._queue.job_finished.connect(self._on_queue_job_finished)
            self._queue.job_failed.connect(self._on_queue_job_failed)
            self._queue.job_cancelled.connect(self._on_queue_job_cancelled)
            for job in self.plan.jobs:
                queued = self._queue.enqueue(job.request, origin=self, label=f"Grid: {job.describe(self.plan)}")
                self._jobs[queued.id] = job
            return
        if not ray_available():
            self.failed.emit(RAY_MISSING_HINT)
            return
        self._thread = threading.Thread(target=self._farm_main, name="easel-farm", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Stop scheduling and cancel the running jobs; what finished is kept and drawn."""
        self._cancel.set()
        if self.farm is None:
            for queued_id in list(self._jobs):
                self._queue.cancel(queued_id)

    def wait(self, timeout: float | None = None) -> None:
        """Join the farm thread (the window waits for it when it closes)."""
        if self._thread is not None:
            self._thread.join(timeout)

    # -- this machine: the queue ----------------------------------------------------------------

    def _on_queue_job_finished(self, job, outcome) -> None:
        grid_job = self._jobs.pop(job.id, None) if job.origin is self else None
        if grid_job is None:
            return
        images = list(getattr(outcome.result, "images", ()))
        if images:
            self.run.record(grid_job, images[0], list(outcome.paths))
        self._after_job()

    def _on_queue_job_failed(self, job, message: str) -> None:
        grid_job = self._jobs.pop(job.id, None) if job.origin is self else None
        if grid_job is not None:
            self.run.fail(grid_job, message)
            self._after_job()

    def _on_queue_job_cancelled(self, job) -> None:
        grid_job = self._jobs.pop(job.id, None) if job.origin is self else None
        if grid_job is not None:
            self.run.cancel(grid_job)
            self._after_job()

    def _after_job(self) -> None:
        if self.accounted < self.total:
            return
        self._disconnect_queue()
        asyncio.get_running_loop().create_task(self._finish())

    def _disconnect_queue(self) -> None:
        for signal, slot in ((self._queue.job_finished, self._on_queue_job_finished),
                             (self._queue.job_failed, self._on_queue_job_failed),
                             (self._queue.job_cancelled, self._on_queue_job_cancelled)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass

    async def _finish(self, farm_paths: list[Path] | None = None) -> None:
        try:
            grid = await self._bridge.run_library(self.run.finish)
        except EaselError as exc:
            self.failed.emit(str(exc))
            return
        new_files = list(farm_paths or []) + ([grid] if grid else [])
        if new_files:
            await self._gallery.import_files(new_files)  # inside the library: indexed, not copied
        self.finished.emit(str(grid) if grid else "")

    # -- the farm: a thread that drives engine.farm ---------------------------------------------

    def _farm_main(self) -> None:
        """On the farm thread: start (or join) the cluster, run the plan, report through _farm_event."""
        try:
            from engine.farm.farm import Farm

            folders = sorted({str(Path(j.request.model).expanduser().resolve().parent) for j in self.plan.jobs})
            folders += self._folders  # the window's model folders: workers on this machine search them too
            # Workers of a local cluster share the window's data folder (its model-folder settings and hash
            # cache); on a real cluster each node uses its own.
            with Farm(self.farm or None, folders=folders, data_dir=None if self.farm else self._data_dir) as farm:
                farm.run(self.plan, self.run, self._cancel)
        except EaselError as exc:
            self._farm_event.emit("failed", None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: one line in the window, details in the log
            log.exception("farm batch failed")
            self._farm_event.emit("failed", None, f"the farm stopped: {type(exc).__name__}: {exc}")
        self._farm_event.emit("done", None, None)

    def _on_farm_event(self, kind: str, job, payload) -> None:
        if kind == "progress":
            self.progress_changed.emit(self.accounted, self.total, payload)
        elif kind == "failed":
            self.failed.emit(payload)
        elif kind == "done":
            self.wait()
            paths = [p for ps in self.run.paths.values() for p in ps]
            asyncio.get_running_loop().create_task(self._finish(paths))


class _ThreadEvents:
    """GridRun events → the batch's signals (hopping to the GUI thread when they come from the farm)."""

    def __init__(self, batch: GridBatch):
        self._batch = batch

    def _line(self, text: str) -> None:
        b = self._batch
        if threading.current_thread() is threading.main_thread():
            b.progress_changed.emit(b.accounted, b.total, text)
        else:
            b._farm_event.emit("progress", None, text)

    def job_started(self, job, worker):
        self._line(f"{job.describe(self._batch.plan)} on {worker}")

    def job_progressed(self, job, step, total):
        pass

    def job_finished(self, job, paths):
        self._line(f"done: {job.describe(self._batch.plan)}")

    def job_failed(self, job, message):
        self._line(f"failed: {job.describe(self._batch.plan)}: {message}")

    def note(self, line):
        self._line(line)


class GridLauncher(QObject):
    """What the Batch / grid dialog drives: plans a grid over the window's current settings and runs it.
    ``farm_available`` is False (and ``farm_hint`` says why in one line) when Ray is not installed."""

    batch_started = Signal(object)  # GridBatch

    def __init__(self, actions, parent: QObject | None = None):
        super().__init__(parent)
        self._actions = actions
        self.batch: GridBatch | None = None
        self.farm_available = ray_available()
        self.farm_hint = "" if self.farm_available else RAY_MISSING_HINT

    def plan(self, axes: list[tuple[str, str]]):
        """The plan for ``axes`` ((name, values text) for X, Y, Z; empty name = unused) over the current
        settings. Raises EaselError (InvalidRequest, GridError) with one line."""
        from engine.grid import parse_axis, plan_grid

        parsed = [parse_axis(f"{name}={values}") if name else None for name, values in axes]
        if not any(parsed):
            from engine.grid import GridError

            raise GridError("choose at least one axis and give it values")
        return plan_grid(self._actions.params.to_request(), *parsed)

    def start(self, axes: list[tuple[str, str]], farm: str | None = None) -> GridBatch:
        """Plan and start; ``farm`` as in GridBatch. Raises EaselError before anything is queued."""
        a = self._actions
        if farm is not None and not self.farm_available:
            raise EaselError(RAY_MISSING_HINT)
        plan = self.plan(axes)
        self.batch = GridBatch(plan, a.queue, a.gallery, a.bridge, farm=farm, folders=a.model_folders(),
                               data_dir=str(a.data_dir), parent=self)
        self.batch_started.emit(self.batch)
        self.batch.start()
        return self.batch

    def stop(self) -> None:
        """On quit: cancel a running batch and wait for its farm thread."""
        if self.batch is not None:
            self.batch.cancel()
            self.batch.wait(30)

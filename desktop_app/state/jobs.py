"""The job queue: Generate while busy enqueues; jobs run in order, one at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from desktop_app.bridge import EngineBridge, ProgressUpdate, UpscaleSpec
from desktop_app.state.errors import ErrorReporter
from engine.api import Cancelled, EaselError, GenerationRequest, ModelError, OutOfMemory

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class JobStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(eq=False)
class Job:
    """A queued generation (``request``) or, with ``upscale`` set, a GAN upscale (``request`` None)."""

    request: GenerationRequest | None
    id: int = field(default_factory=lambda: next(_ids))
    status: JobStatus = JobStatus.PENDING
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    error: str | None = None
    cancelled_at_step: int | None = None  # the engine's step when it honoured a cancel
    origin: object = None  # what asked for it, e.g. a canvas edit (results go back to the canvas)
    upscale: UpscaleSpec | None = None
    label: str = ""  # shown instead of the prompt (e.g. "Variations of …", "Upscale x4 …")

    @property
    def title(self) -> str:
        text = self.label or " ".join(self.request.prompt.split()) or "(empty prompt)"
        return text if len(text) <= 60 else text[:57] + "…"

    @property
    def details(self) -> str:
        """A tooltip's worth: what the job makes."""
        if self.upscale is not None:
            u = self.upscale
            w, h = u.image.size
            return f"Upscale {u.source_name} x{u.scale}: {w}×{h} → {w * u.scale}×{h * u.scale} with {u.model_name}"
        r = self.request
        return f"{r.prompt}\n{r.width}×{r.height}, {r.steps} steps, seed {r.seed}, {r.batch_count} image(s)"


@dataclass(frozen=True)
class ProgressInfo:
    """What the progress bar shows; computed on the GUI thread from engine progress.

    A multi-stage job (a cascade) is at ``step`` of ``total`` within stage ``stage`` of ``stages``;
    ``unit`` is what a step is ("Step", or "Tile" for an upscale).
    """

    step: int
    total: int
    image_index: int
    batch_count: int
    rate: float  # steps per second (0 when unknown)
    eta: float | None  # seconds left for the whole job
    stage: int = 1
    stages: int = 1
    stage_name: str = ""
    unit: str = "Step"

    @property
    def fraction(self) -> float:
        """Of the whole job: images done, plus stages done of this image, plus this stage's steps."""
        stages = max(1, self.stages)
        within = (min(max(self.stage, 1), stages) - 1 + self.step / max(1, self.total)) / stages
        return min(1.0, (self.image_index + within) / max(1, self.batch_count))


class JobQueue(QObject):
    job_added = Signal(object)  # Job
    job_removed = Signal(object)  # Job, left the queue (done, failed or cancelled)
    jobs_reordered = Signal()
    job_started = Signal(object)
    job_progressed = Signal(object, object)  # Job, ProgressInfo
    preview_changed = Signal(QImage)
    phase_changed = Signal(str)
    job_finished = Signal(object, object)  # Job, Outcome (a generation)
    job_upscaled = Signal(object, object)  # Job, UpscaleOutcome (an upscale job)
    job_failed = Signal(object, str)  # Job, message
    job_cancelled = Signal(object)
    job_cancelling = Signal(object)  # Job: the running job was asked to stop (it stops within a step)
    busy_changed = Signal(bool)

    def __init__(self, bridge: EngineBridge, reporter: ErrorReporter, output_dir: Path, parent: QObject | None = None):
        super().__init__(parent)
        self._bridge = bridge
        self._reporter = reporter
        self.output_dir = output_dir
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._samples: list[tuple[float, int]] = []
        self.history: list[Job] = []  # every job this session, in the order they left the queue

    # -- queries ------------------------------------------------------------------------------

    @property
    def pending(self) -> list[Job]:
        return list(self._pending)

    @property
    def running(self) -> Job | None:
        return self._running

    @property
    def busy(self) -> bool:
        return self._running is not None or bool(self._pending)

    def jobs(self) -> list[Job]:
        return ([self._running] if self._running else []) + self._pending

    # -- actions ------------------------------------------------------------------------------

    def enqueue(self, request: GenerationRequest, origin: object = None, label: str = "") -> Job:
        return self._add(Job(request, origin=origin, label=label))

    def enqueue_upscale(self, spec: UpscaleSpec, origin: object = None) -> Job:
        """Queue a GAN upscale: it runs on the engine thread in turn with generations, never beside one."""
        label = f"Upscale x{spec.scale} · {spec.source_name}"
        return self._add(Job(None, origin=origin, upscale=spec, label=label))

    def _add(self, job: Job) -> Job:
        was_busy = self.busy
        self._pending.append(job)
        log.info("job %d queued: %r", job.id, job.title)
        self.job_added.emit(job)
        if not was_busy:
            self.busy_changed.emit(True)
        self._ensure_runner()
        return job

    def cancel(self, job_id: int) -> bool:
        if self._running is not None and self._running.id == job_id:
            job = self._running
            if not job.cancel.is_set():
                job.cancel.set()  # the engine stops at its next step; the runner reports it
                self.job_cancelling.emit(job)  # said at once: a huge step can take a while to end
            return True
        for job in self._pending:
            if job.id == job_id:
                self._pending.remove(job)
                self._leave(job, JobStatus.CANCELLED)
                self.job_cancelled.emit(job)
                return True
        return False

    def cancel_running(self) -> bool:
        return self._running is not None and self.cancel(self._running.id)

    def clear_pending(self) -> int:
        jobs, self._pending = self._pending, []
        for job in jobs:
            self._leave(job, JobStatus.CANCELLED)
            self.job_cancelled.emit(job)
        return len(jobs)

    def cancel_all(self) -> None:
        self.clear_pending()
        self.cancel_running()

    def move(self, job_id: int, delta: int) -> bool:
        """Move a pending job ``delta`` places (negative = sooner)."""
        for i, job in enumerate(self._pending):
            if job.id == job_id:
                j = max(0, min(len(self._pending) - 1, i + delta))
                if j == i:
                    return False
                self._pending.insert(j, self._pending.pop(i))
                self.jobs_reordered.emit()
                return True
        return False

    def stop(self) -> None:
        """Cancel everything and stop the runner (window closing). GUI thread."""
        self.clear_pending()
        running = self._running
        if running is not None:
            running.cancel.set()  # the engine thread stops at its next step; the bridge joins it
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if running is not None and running.status is JobStatus.RUNNING:
            self._leave(running, JobStatus.CANCELLED)
            self.job_cancelled.emit(running)

    # -- the runner ---------------------------------------------------------------------------

    def _ensure_runner(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._bridge.wait_ready()
            except Exception:
                message = f"The engine could not start, so nothing can be generated: {self._bridge.error}"
                for job in self._pending[:]:
                    self._pending.remove(job)
                    self._leave(job, JobStatus.FAILED, message)
                    self.job_failed.emit(job, message)
                self._reporter.report(message)
                continue
            if not self._pending:
                continue
            job = self._pending.pop(0)
            try:
                await self._run_job(job)
            except Exception as exc:  # a bug in handling the outcome: report it, keep the queue running
                message = f"Job {job.id} failed after it ran: {exc}"
                if job.status is JobStatus.RUNNING:
                    self._leave(job, JobStatus.FAILED, message)
                    self.job_failed.emit(job, message)
                self._running = None
                self._reporter.report(message, exc)

    async def _run_job(self, job: Job) -> None:
        self._running = job
        job.status = JobStatus.RUNNING
        self._samples = []
        self.job_started.emit(job)
        log.info("job %d started", job.id)
        try:
            if job.upscale is not None:
                outcome = await self._bridge.upscale(
                    job.upscale,
                    cancel=job.cancel,
                    save_to=self.output_dir,
                    on_progress=lambda update: self._on_bridge_progress(job, update),
                    on_phase=self.phase_changed.emit,
                )
            else:
                outcome = await self._bridge.generate(
                    job.request,
                    cancel=job.cancel,
                    save_to=self.output_dir,
                    on_progress=lambda update: self._on_bridge_progress(job, update),
                    on_phase=self.phase_changed.emit,
                )
        except asyncio.CancelledError:
            if self._running is job:
                self._running = None
            raise
        except Cancelled as exc:
            log.info("job %d cancelled (%s)", job.id, exc)
            job.cancelled_at_step = exc.step
            self._leave(job, JobStatus.CANCELLED)
            self.job_cancelled.emit(job)
        except Exception as exc:
            message = _plain(exc, job)
            self._leave(job, JobStatus.FAILED, message)
            self._reporter.report(message, exc)
            self.job_failed.emit(job, message)
        else:
            # A cancel that came while the result was being saved is too late: the images are on disk
            # (the engine thread checks for a cancel just before saving), so they are shown, not hidden.
            log.info("job %d done in %.2f s: %s", job.id, outcome.seconds, [str(p) for p in outcome.paths])
            for notice in getattr(outcome.result, "notices", ()):  # e.g. a lower memory preset after OOM
                self._reporter.notice(notice)
            self._leave(job, JobStatus.DONE)
            if job.upscale is not None:
                self.job_upscaled.emit(job, outcome)
            else:
                self.job_finished.emit(job, outcome)

    def _leave(self, job: Job, status: JobStatus, error: str | None = None) -> None:
        job.status = status
        job.error = error
        if job is self._running:
            self._running = None
        self.history.append(job)
        self.job_removed.emit(job)
        if not self.busy:
            self.busy_changed.emit(False)

    def _on_bridge_progress(self, job: Job, update: ProgressUpdate) -> None:
        if job is not self._running:
            return
        p = update.progress
        info = ProgressInfo(p.step, p.total, p.image_index, p.batch_count, 0.0, None, p.stage, p.stages,
                            p.stage_name, "Tile" if job.upscale is not None else "Step")
        # Samples (time, image, stage, step, fraction of the job): the rate counts steps within one
        # stage of one image (stages differ in step count and cost); the ETA follows the whole job.
        where = (p.image_index, p.stage)
        if self._samples and self._samples[-1][1] != where:
            self._samples = self._samples[-1:]
        self._samples.append((update.at, where, p.step, info.fraction))
        self._samples = self._samples[-20:]
        same = [s for s in self._samples if s[1] == where]
        rate = 0.0
        (t0, _w0, s0, _f0), (t1, _w1, s1, _f1) = same[0], same[-1]
        if t1 > t0 and s1 > s0:
            rate = (s1 - s0) / (t1 - t0)
        elif p.elapsed > 0 and p.step > 0 and p.stages <= 1:
            rate = p.step / p.elapsed
        (ta, _wa, _sa, fa), (tb, _wb, _sb, fb) = self._samples[0], self._samples[-1]
        if tb > ta and fb > fa:
            eta = (1.0 - fb) * (tb - ta) / (fb - fa)
        elif p.elapsed > 0 and info.fraction > 0:
            eta = p.elapsed * (1.0 - info.fraction) / info.fraction
        else:
            eta = None
        self.job_progressed.emit(job, dataclasses.replace(info, rate=rate, eta=eta))
        if update.preview is not None:
            self.preview_changed.emit(update.preview)


def _plain(exc: BaseException, job: Job) -> str:
    if isinstance(exc, ModelError):
        return f"The model could not be used: {exc}"
    if isinstance(exc, OutOfMemory):
        return f"Out of memory: {exc}. Try a smaller size, a lower memory preset, or fewer images per batch."
    if isinstance(exc, EaselError):
        return str(exc)
    return f"Generating “{job.title}” failed unexpectedly ({type(exc).__name__}: {exc}). See details."

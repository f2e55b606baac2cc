"""The engine bridge: the only code in the desktop app that crosses threads.

One long-lived engine thread (a one-worker executor) owns the Engine and the GPU: it imports
torch/diffusers, creates the Engine, loads models, generates and saves. Coroutines on the GUI
thread await it. Progress comes back through ``loop.call_soon_threadsafe``; updates that arrive
faster than the GUI drains them are coalesced so the GUI never queues up work. Images cross as
QImage copies made on the engine thread; QPixmaps are made on the GUI thread by the widgets.

A second one-worker executor does file I/O that must not wait behind a generation (folder scans,
reading an image's metadata). A third owns the gallery library's writes and searches, and a fourth
(``ThumbnailLoader``) makes and reads thumbnails, newest request first, so a scroll through
thousands of images never waits behind thumbnails that have already scrolled away.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from desktop_app.upscale_work import UpscaleOutcome, UpscaleSpec, default_upscale_saver, run_upscale
from engine.api import Cancelled, EaselError, GenerationRequest, ModelInfo, Progress, Result

log = logging.getLogger(__name__)

ENGINE_THREAD_NAME = "easel-engine"
IO_THREAD_NAME = "easel-io"
LIBRARY_THREAD_NAME = "easel-library"
THUMBS_THREAD_NAME = "easel-thumbs"
SWITCH_INTERVAL = 0.001  # seconds; see EngineBridge.start
# Live runs (desktop_app.state.live) re-render the canvas while the artist paints. On a CPU a live run uses
# this many torch threads (None: torch's own count): torch's OpenMP workers spin between a small model's
# small operations and take the cores the GUI thread needs, and on a busy machine one thread runs a tiny
# model's live run 6-15x sooner. Measured (bench/bench_live.py, BENCHMARKS.md): the window's long gaps are
# its thread waiting for a core (~80% of them), not for the GIL (1-2%).
LIVE_TORCH_THREADS: int | None = 1
# How long Quit waits for the engine thread to honour a cancel. A step of a huge job on a CPU can take
# minutes and cannot be interrupted from outside, so after this the app exits without it (settings,
# canvas and queue are saved before) instead of freezing the window.
QUIT_WAIT_SECONDS = 3.0


def default_engine_factory() -> Any:
    """Runs on the engine thread: the import of torch + diffusers happens here, not at start-up.

    The modules a first load would import lazily are imported now too, while the window says the
    engine is loading, so the first generation does not stall the GUI with module initialisation.
    """
    from engine.engine import Engine
    from engine.warmup import warm_imports

    warm_imports()
    return Engine()


def default_saver(result: Result, folder: Path) -> list[Path]:
    """Runs on the engine thread."""
    from engine.outputs import save_result

    return save_result(result, folder)


@contextlib.contextmanager
def _torch_threads(count: int | None):
    """Torch's intra-op thread count set to ``count`` while inside (None: unchanged). Engine thread."""
    if not count:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pil_to_qimage(image: Any) -> QImage:
    """A QImage that owns its pixels (safe to hand to another thread). Any thread."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    data = rgb.tobytes("raw", "RGB")
    w, h = rgb.size
    return QImage(data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


@dataclass(frozen=True)
class ProgressUpdate:
    """A Progress plus what the GUI needs: a QImage preview (or None) and when it happened."""

    progress: Progress
    preview: QImage | None
    at: float  # time.monotonic() on the engine thread


@dataclass
class Outcome:
    """A finished job. ``saved`` is what the saver returned (gallery entries); ``paths`` the files.

    ``save_error`` is set when saving failed (a full disk): ``unsaved`` are the indexes of the
    result's images that are only in memory (``images``), to be saved elsewhere.
    """

    result: Result
    paths: list[Path]
    images: list[QImage] = field(default_factory=list)
    seconds: float = 0.0
    saved: list[Any] = field(default_factory=list)
    save_error: str | None = None
    unsaved: list[int] = field(default_factory=list)


class _ProgressHop:
    """Carries progress from the engine thread to the GUI thread, coalescing a backlog.

    ``push`` runs on the engine thread; the callback runs on the GUI thread. While a delivery is
    scheduled and not yet run, new updates replace the waiting one (keeping the newest preview).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[ProgressUpdate], None]):
        self._loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._waiting: ProgressUpdate | None = None
        self.closed = False

    def push(self, update: ProgressUpdate) -> None:
        with self._lock:
            scheduled = self._waiting is not None
            if scheduled and update.preview is None and self._waiting.preview is not None:
                update = ProgressUpdate(update.progress, self._waiting.preview, update.at)
            self._waiting = update
        if not scheduled:
            try:
                self._loop.call_soon_threadsafe(self._flush)
            except RuntimeError:  # loop closed while the app shuts down
                pass

    def _flush(self) -> None:
        with self._lock:
            update, self._waiting = self._waiting, None
        if update is not None and not self.closed:
            try:
                self._deliver(update)
            except Exception:  # a slot must never raise into the event loop
                log.exception("progress handler failed")


class EngineBridge(QObject):
    """Owns the engine thread. Public methods are called on the GUI thread."""

    state_changed = Signal(str)  # "stopped" | "starting" | "ready" | "failed" | "closed"
    runtime_changed = Signal(object)  # dict: device, dtype, preset, model (after a load)

    def __init__(
        self,
        engine_factory: Callable[[], Any] | None = None,
        saver: Callable[[Result, Path], list[Path]] | None = None,
        parent: QObject | None = None,
        upscale_saver: Callable[[Any, dict[str, str], Path], Any] | None = None,
    ):
        super().__init__(parent)
        self._engine_factory = engine_factory or default_engine_factory
        self._saver = saver or default_saver
        self._upscale_saver = upscale_saver or default_upscale_saver
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=ENGINE_THREAD_NAME)
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=IO_THREAD_NAME)
        self._downloads = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="easel-download")
        self._library = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=LIBRARY_THREAD_NAME)
        self.thumbnails = ThumbnailLoader()
        self._engine: Any = None  # touched only on the engine thread
        self._cancels: set[threading.Event] = set()
        self._state = "stopped"
        self.error: str | None = None
        self.startup_seconds: float | None = None
        self._ready: asyncio.Future[None] | None = None
        self._engine_info: dict[str, str] = {}
        self.engine_stuck = False  # set by shutdown when the engine thread did not stop in time

    # -- lifecycle (GUI thread) ---------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    def start(self) -> asyncio.Task[None]:
        """Create the engine on the engine thread; the returned task finishes when it is ready."""
        loop = asyncio.get_running_loop()
        # The engine thread keeps the GIL busy between torch calls; with the default 5 ms switch
        # interval every GIL hand-back to the GUI thread can cost 5 ms or more, and a slot that
        # needs it several times stretches into tens of ms. 1 ms keeps the GUI's share prompt.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self._ready = loop.create_future()
        self._set_state("starting")
        return loop.create_task(self._start())

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            await loop.run_in_executor(self._executor, self._create_engine)
        except Exception as exc:  # ImportError, a broken install, no device...
            log.exception("the engine could not start")
            self.error = f"{type(exc).__name__}: {exc}"
            self._set_state("failed")
            if self._ready and not self._ready.done():
                self._ready.set_exception(RuntimeError(f"The engine could not start: {self.error}"))
                self._ready.exception()  # mark retrieved: the queue reads bridge.error instead
            return
        self.startup_seconds = time.perf_counter() - t0
        log.info("engine ready after %.2f s", self.startup_seconds)
        self.runtime_changed.emit(self._engine_info)
        if self._ready and not self._ready.done():
            self._ready.set_result(None)
        self._set_state("ready")

    async def wait_ready(self) -> None:
        if self._ready is None:
            raise RuntimeError("the engine bridge was not started")
        await asyncio.shield(self._ready)

    def _create_engine(self) -> None:
        """Engine thread: import the heavy stack and create the Engine."""
        threading.current_thread().name = ENGINE_THREAD_NAME
        self._engine = engine = self._engine_factory()
        self._engine_info = {"device": str(getattr(engine, "device", "—")), "dtype": _dtype_name(getattr(engine, "dtype", "—"))}

    def shutdown(self, wait_seconds: float | None = None) -> bool:
        """Cancel whatever runs, unload the model, and stop the threads. GUI thread.

        Waits at most ``wait_seconds`` (default QUIT_WAIT_SECONDS) for the engine thread: True when it stopped, False when it is
        still inside a step that does not check the cancel (``engine_stuck``; the caller then exits
        the process without joining it). Safe to call twice.
        """
        if self._state == "closed":
            return not self.engine_stuck
        for event in list(self._cancels):
            event.set()
        wait_seconds = QUIT_WAIT_SECONDS if wait_seconds is None else wait_seconds
        unloaded = self._executor.submit(self._unload)
        concurrent.futures.wait([unloaded], timeout=wait_seconds)
        self.engine_stuck = not unloaded.done()
        if self.engine_stuck:
            log.warning("the engine thread did not stop within %.1f s of the cancel; quitting without it",
                        wait_seconds)
        # A stuck engine thread is not joined here: the GUI thread must not wait on it.
        self._executor.shutdown(wait=not self.engine_stuck, cancel_futures=True)
        self._io.shutdown(wait=True, cancel_futures=True)
        self._downloads.shutdown(wait=True, cancel_futures=True)  # a running one was cancelled above
        self.thumbnails.shutdown()
        self._library.shutdown(wait=True, cancel_futures=False)  # a write in progress finishes
        self._set_state("closed")
        return not self.engine_stuck

    @property
    def engine_thread_alive(self) -> bool:
        """Whether the engine thread still runs (after a shutdown that gave up on it). Any thread."""
        return any(t.is_alive() for t in getattr(self._executor, "_threads", ()))

    def _unload(self) -> None:
        """Engine thread."""
        if self._engine is not None:
            try:
                self._engine.unload()
            except Exception:
                log.exception("unloading the engine failed")
            self._engine = None

    # -- work ---------------------------------------------------------------------------------

    async def generate(
        self,
        request: GenerationRequest,
        *,
        cancel: threading.Event,
        save_to: Path | None,
        on_progress: Callable[[ProgressUpdate], None] | None = None,
        on_phase: Callable[[str], None] | None = None,
        live: bool = False,
    ) -> Outcome:
        """Run one job on the engine thread; raises what Engine.generate raises (Cancelled, ...).
        ``live``: a live-mode run (on a CPU with LIVE_TORCH_THREADS torch threads)."""
        outcome = await self._engine_job(
            lambda hop, phase: self._generate(request, cancel, save_to, hop, phase, live), cancel, on_progress, on_phase)
        self.runtime_changed.emit(self._runtime_info(outcome.result))
        return outcome

    def _generate(
        self,
        request: GenerationRequest,
        cancel: threading.Event,
        save_to: Path | None,
        hop: _ProgressHop | None,
        phase: Callable[[str], None],
        live: bool = False,
    ) -> Outcome:
        """Engine thread: load if needed, generate, save, and turn images into QImages."""
        engine = self._engine
        if engine is None:
            raise RuntimeError("the engine is not running")
        t0 = time.perf_counter()
        loaded = getattr(engine, "loaded", None)
        wanted = str(Path(request.model).expanduser().resolve()) if request.model else ""
        if wanted and (loaded is None or loaded.path != wanted):
            phase(f"Loading model {Path(request.model).name}…")
            engine.load(request.model, request.memory_preset)
        phase("Generating…")

        def on_progress(progress: Progress) -> None:
            if hop is None:
                return
            preview = pil_to_qimage(progress.preview) if progress.preview is not None else None
            hop.push(ProgressUpdate(progress, preview, time.monotonic()))

        with _torch_threads(LIVE_TORCH_THREADS if live and str(getattr(engine, "device", "")) == "cpu" else None):
            result = engine.generate(request, on_progress=on_progress, cancel=cancel)
        if cancel.is_set():  # cancelled after the last step: leave no file behind either
            raise Cancelled(request.steps, request.steps)
        saved: list[Any] = []
        save_error, unsaved = None, []
        if save_to is not None:
            phase("Saving…")
            try:
                saved = list(self._saver(result, save_to))
            except EaselError as exc:  # a full disk, no permission: the images stay in memory
                log.warning("saving failed: %s", exc)
                saved = list(getattr(exc, "saved", []))
                save_error = str(exc)
                unsaved = list(getattr(exc, "unsaved", range(len(result.images))))
        images = [pil_to_qimage(im) for im in result.images]
        paths = [Path(getattr(s, "absolute_path", s)) for s in saved]
        return Outcome(result, paths, images, time.perf_counter() - t0, saved, save_error, unsaved)

    async def upscale(
        self,
        spec: UpscaleSpec,
        *,
        cancel: threading.Event,
        save_to: Path,
        on_progress: Callable[[ProgressUpdate], None] | None = None,
        on_phase: Callable[[str], None] | None = None,
    ) -> UpscaleOutcome:
        """Run a GAN upscale on the engine thread (never beside a generation: the queue runs one job at
        a time on that one thread). Progress is per tile; ``cancel`` stops within one tile (Cancelled)
        and nothing is saved. Raises EaselError subclasses with one plain line."""
        return await self._engine_job(lambda hop, phase: self._upscale(spec, cancel, save_to, hop, phase),
                                      cancel, on_progress, on_phase)

    async def _engine_job(self, work: Callable[[_ProgressHop | None, Callable[[str], None]], Any],
                          cancel: threading.Event, on_progress: Callable[[ProgressUpdate], None] | None,
                          on_phase: Callable[[str], None] | None) -> Any:
        """Run ``work(hop, phase)`` on the engine thread: progress and phase texts hop back to the GUI
        thread, and ``cancel`` is set too if the app shuts down meanwhile."""
        loop = asyncio.get_running_loop()
        hop = _ProgressHop(loop, on_progress) if on_progress else None

        def phase(text: str) -> None:
            if on_phase is not None:
                loop.call_soon_threadsafe(on_phase, text)

        self._cancels.add(cancel)
        try:
            return await loop.run_in_executor(self._executor, work, hop, phase)
        finally:
            self._cancels.discard(cancel)
            if hop is not None:
                hop.closed = True

    def _upscale(self, spec: UpscaleSpec, cancel: threading.Event, save_to: Path, hop: _ProgressHop | None,
                 phase: Callable[[str], None]) -> UpscaleOutcome:
        """Engine thread: upscale tile by tile through the Engine (the upscaler stays loaded), save."""
        t0 = time.perf_counter()

        def on_progress(progress: Progress) -> None:
            if hop is not None:
                hop.push(ProgressUpdate(progress, None, time.monotonic()))

        result, saved = run_upscale(self._engine, spec, cancel, on_progress, phase,
                                    lambda r: self._upscale_saver(r, spec.source_texts, save_to))
        path = Path(getattr(saved, "absolute_path", saved))
        return UpscaleOutcome(result, saved, path, pil_to_qimage(result.image), pil_to_qimage(spec.image),
                              time.perf_counter() - t0)

    def save(self, result: Result, folder: Path) -> list[Any]:
        """Save ``result`` with the saver generations use (the gallery's). Engine thread."""
        return list(self._saver(result, folder))

    async def run_on_engine_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the engine thread (e.g. making a demo model, which needs torch)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the I/O thread (folder scans, header reads)."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def download(self, job: Any, on_event: Callable[[Any], None], cancel: threading.Event) -> Path:
        """Run ``job.run`` (an engine.download.Download: a child process) on the download thread;
        its events hop to ``on_event`` on the GUI thread. Setting ``cancel`` stops it."""
        loop = asyncio.get_running_loop()

        def hop(event: Any) -> None:  # download thread
            try:
                loop.call_soon_threadsafe(on_event, event)
            except RuntimeError:
                pass

        self._cancels.add(cancel)
        try:
            return await loop.run_in_executor(self._downloads, job.run, hop, cancel)
        finally:
            self._cancels.discard(cancel)

    async def run_library(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the library thread (the gallery's writes, searches, reconciles)."""
        return await asyncio.get_running_loop().run_in_executor(self._library, fn, *args)

    @staticmethod
    def _runtime_info(result: Result) -> dict[str, Any]:
        s = result.settings
        info: ModelInfo = result.model
        # fp8 storage (engine.core.precision): weights kept in fp8, computed in the dtype.
        dtype = _dtype_name(s.dtype) + (" · fp8 storage" if getattr(s, "fp8_storage", ()) else "")
        return {"device": s.device, "dtype": dtype, "preset": s.preset, "model": info.name,
                "model_info": info}


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


class ThumbnailLoader:
    """Runs thumbnail jobs on one worker thread, newest request first; results hop back to the GUI.

    ``request`` (GUI thread) queues ``job`` (run on the worker: returns a QImage or None) under
    ``key``; ``deliver(key, image)`` runs on the GUI thread. Requests beyond ``max_pending`` drop
    the oldest (they scrolled away); ``request`` returns the dropped keys so the caller can ask
    again later.
    """

    def __init__(self, max_pending: int = 256):
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=THUMBS_THREAD_NAME)
        self._lock = threading.Lock()
        self._pending: dict[Any, tuple[Callable[[], QImage | None], Callable[[Any, QImage | None], None]]] = {}
        self._max_pending = max_pending
        self._running = False
        self._closed = False
        self.loaded_count = 0

    def request(self, key: Any, job: Callable[[], QImage | None], deliver: Callable[[Any, QImage | None], None]) -> list[Any]:
        loop = asyncio.get_event_loop()
        dropped: list[Any] = []
        with self._lock:
            if self._closed:
                return [key]
            self._pending.pop(key, None)
            self._pending[key] = (job, deliver)
            while len(self._pending) > self._max_pending:
                dropped.append(next(iter(self._pending)))
                del self._pending[dropped[-1]]
            start = not self._running
            self._running = True
        if start:
            self._executor.submit(self._drain, loop)
        return dropped

    def cancel_all(self) -> list[Any]:
        with self._lock:
            keys = list(self._pending)
            self._pending.clear()
        return keys

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thumbnail thread: run the newest pending job until none is left."""
        while True:
            with self._lock:
                if self._closed or not self._pending:
                    self._running = False
                    return
                key = next(reversed(self._pending))
                job, deliver = self._pending.pop(key)
            try:
                image = job()
            except Exception:  # a bad file must not stop the loader
                log.exception("thumbnail for %s failed", key)
                image = None
            self.loaded_count += 1
            try:
                loop.call_soon_threadsafe(deliver, key, image)
            except RuntimeError:  # the loop closed while the app shuts down
                return

    def shutdown(self) -> None:
        """GUI thread: drop what waits and join the worker."""
        with self._lock:
            self._closed = True
            self._pending.clear()
        self._executor.shutdown(wait=True)

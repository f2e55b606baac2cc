"""Live mode: while it is on, the canvas re-renders itself after every change.

A change of what the picture is made from (a stroke, a layer shown or hidden, the prompt, the strength,
a control layer) schedules a run: img2img of the visible image layers at the strength, or an inpaint
of the mask in Inpaint mode, with the chosen model (a fast one: SD-Turbo, SDXL-Turbo, FLUX.1 [schnell],
Z-Image Turbo; any model works). Latest wins:

- a change cancels the run in progress at once (the engine stops within a step);
- a change after a quiet moment starts a run at once (a single stroke waits for nothing); changes that
  follow it closely (a burst of strokes) restart a short timer, and one run starts when they pause,
  from the canvas as it is then: a burst gives at most two runs, the first of which it cancels;
- at most one live run is on the engine thread at a time: nothing queues up.

Live runs go through the same bridge and engine thread as the queue's jobs, but not through the queue
(its list and history) nor into the gallery: a frame is kept in memory only, and Apply copies it into a
new layer (and hands it to ``applied``: the window's actions save applied frames to the gallery). The
seed is pinned while live mode is on (the prompt panel's fixed seed, else one drawn when live mode is
turned on), so strokes change the picture, not the noise. GUI thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from desktop_app.bridge import EngineBridge, ProgressUpdate
from desktop_app.state.canvas import qimage_to_array
from desktop_app.state.errors import ErrorReporter
from desktop_app.state.params import GenerationParameters
from desktop_app.state.status import EngineStatus
from engine.api import Cancelled, EaselError, Result, random_seed
from engine.lazy import LazyModule

np = LazyModule("numpy")

log = logging.getLogger(__name__)
DEBOUNCE_MS = 150  # changes closer than this are one burst: one run when they pause


@dataclass(frozen=True)
class LiveFrame:
    """One finished live run: the image (canvas size), what it was made from and how long it took."""

    image: QImage
    result: Result
    seed: int
    mode: str  # "img2img" | "inpaint"
    source: Any  # the composite (h, w, 4 RGB32) it was made from
    revision: int  # the canvas revision it was made from
    seconds: float  # the run on the engine thread
    latency: float  # from the change it answers to the frame shown


class LiveMode(QObject):
    """Live mode of one canvas (``canvas``: its CanvasActions). GUI thread."""

    enabled_changed = Signal(bool)
    overlay_changed = Signal(bool)  # True: the frame shows over the canvas; False: beside it
    frame_changed = Signal()  # a new frame (or none)
    running_changed = Signal(bool)
    progressed = Signal(int, int)  # step, total of the run in progress
    message_changed = Signal(str)  # what live mode is doing, or why it cannot run
    applied = Signal(object)  # LiveFrame: copied into a new layer

    def __init__(self, canvas: Any, params: GenerationParameters, bridge: EngineBridge, reporter: ErrorReporter,
                 status: EngineStatus, spawn: Callable[[Any], asyncio.Task[Any]], parent: QObject | None = None):
        super().__init__(parent)
        self.canvas, self.doc, self.params, self.bridge = canvas, canvas.doc, params, bridge
        self.reporter, self.status, self._spawn = reporter, status, spawn
        self.enabled = False
        self.overlay = False
        self.frame: LiveFrame | None = None
        self.message = ""
        self._noticed: set[str] = set()  # notices said this session of live painting (once each, not every frame)
        self._seed: int | None = None  # drawn when live mode starts with a random seed
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._cancel: threading.Event | None = None  # the run in progress
        self._task: asyncio.Task[None] | None = None
        self._want_run = False  # a run was due while the cancelled one unwound: start it when that ends
        self._dirty = False  # a change no run has started from yet
        self._changed_at = 0.0
        self._applied = 0
        # Counters (the benchmark and the tests read them): every run started, finished, cancelled.
        self.runs_started = self.runs_finished = self.runs_cancelled = 0
        self.cancelled_steps: list[tuple[int, int]] = []  # (step when asked to stop, step it stopped at)
        self._step = 0
        doc = self.doc
        doc.undo_stack.indexChanged.connect(self._on_change)  # strokes, fills, layers shown/hidden, opacity…
        doc.document_replaced.connect(self._on_document_replaced)
        for signal in (params.prompt_changed, params.negative_prompt_changed, params.model_changed,
                       params.steps_changed, params.guidance_scale_changed, params.sampler_changed,
                       params.seed_changed, params.seed_mode_changed, params.edit_mode_changed,
                       params.strength_changed, params.only_masked_changed, params.mask_padding_changed,
                       params.mask_blur_changed, params.width_changed, params.height_changed,
                       params.speed_changed):
            signal.connect(self._on_change)
        if bridge is not None:  # (a canvas without an engine, as in the canvas benchmark)
            bridge.state_changed.connect(lambda state: self._on_change() if state == "ready" else None)

    # -- what the widgets call ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._cancel is not None

    @property
    def seed(self) -> int:
        """The seed every live run uses: the fixed seed of the prompt panel, else the one pinned."""
        if self.params.seed_mode == "fixed":
            return int(self.params.seed)
        if self._seed is None:
            self._seed = random_seed()
        return self._seed

    @property
    def mode(self) -> str:
        """Inpaint of the mask in Inpaint mode (when there is one), else img2img of the whole canvas."""
        return "inpaint" if self.params.edit_mode == "inpaint" and self.doc.has_mask() else "img2img"

    def set_enabled(self, on: bool) -> None:
        on = bool(on)
        if on == self.enabled:
            return
        self.enabled = on
        if on:
            self._seed = None  # a fresh pinned seed for this session of live painting
            self._noticed.clear()
            self.enabled_changed.emit(True)
            self._on_change()  # the first frame at once
            return
        self._timer.stop()
        self._want_run = self._dirty = False
        if self._cancel is not None:
            self._cancel.set()
        self._set_frame(None)
        self._say("")
        self.enabled_changed.emit(False)

    def set_overlay(self, on: bool) -> None:
        if bool(on) != self.overlay:
            self.overlay = bool(on)
            self.overlay_changed.emit(self.overlay)

    def new_seed(self) -> None:
        """Another pinned seed (with a random seed in the prompt panel), and a run with it."""
        self._seed = random_seed()
        self._on_change()

    def apply(self) -> Any:
        """Copy the frame into a new image layer on top (one undo step): the pixels it changed, opaque.
        Returns the layer, or None when there is no frame of this canvas."""
        frame = self.frame
        if frame is None:
            self.reporter.notice("There is no live result to apply yet.")
            return None
        if frame.source.shape != (self.doc.height, self.doc.width, 4):
            self.reporter.notice("The canvas changed size since this live result: it cannot be applied.")
            return None
        pixels = qimage_to_array(frame.image.convertToFormat(QImage.Format.Format_RGB32))
        changed = np.any(pixels[..., :3] != frame.source[..., :3], axis=2)
        self._applied += 1
        layer = self.doc.add_pixel_layer(pixels, f"Live result {self._applied}", changed)
        if layer is not None:
            self.status.set_activity(f"Applied the live result as the layer “{layer.name}” (Ctrl+Z undoes it).")
            self.applied.emit(frame)
        return layer

    def stop(self) -> None:
        """At quit: no more runs; the one in progress is cancelled."""
        self.set_enabled(False)
        self._timer.stop()

    # -- scheduling ---------------------------------------------------------------------------

    def _on_change(self, *_args: Any) -> None:
        if not self.enabled:
            return
        self._changed_at = time.perf_counter()
        if self._cancel is not None and not self._cancel.is_set():
            self._cancel.set()  # stale now: the engine stops it within a step
            self.cancelled_steps.append((self._step, -1))
        self._dirty = True
        quiet = not self._timer.isActive()
        self._timer.start()
        if quiet:
            self._start()  # after a quiet moment: now (the timer then catches what follows closely)

    def _on_document_replaced(self) -> None:
        self._set_frame(None)
        self._on_change()

    def _on_timer_timeout(self) -> None:
        if self._dirty:
            self._start()

    def _start(self) -> None:
        if not self.enabled:
            return
        self._dirty = False
        if self._task is not None and not self._task.done():
            self._want_run = True  # the cancelled run is still unwinding: the next one follows it
            return
        self._task = self._spawn(self._run())

    def _blocked(self) -> str:
        if not self.doc.has_image:
            return "open or paste an image, then paint: live mode re-renders the canvas"
        if self.bridge is None or self.bridge.state != "ready":
            return "waiting for the engine to start"
        if not self.params.model:
            return "choose a model (a fast one: a Turbo or schnell model)"
        return self.canvas.blocked_reason(self.mode)

    async def _run(self) -> None:
        """One live run from the canvas as it is now; then the next one if the timer fired meanwhile."""
        while True:
            self._want_run = False
            await self._run_once()
            if not (self.enabled and self._want_run):
                return

    async def _run_once(self) -> None:
        reason = self._blocked()
        if reason:
            self._say(f"Live: {reason}.")
            return
        mode, changed_at, revision = self.mode, self._changed_at, self.doc.revision
        try:
            base = self.params.to_request().replace(batch_count=1, seed=self.seed)
            request, origin = self.canvas.build_request(base, mode)
            # the visible control, reference and region layers steer live runs too
            request = self.canvas.with_guides(request, notice=self._notice_once)
        except EaselError as exc:
            self._say(f"Live: {exc}.")
            return
        cancel = self._cancel = threading.Event()
        self._step = 0
        self.runs_started += 1
        self.running_changed.emit(True)
        self._say(f"Live: rendering ({'inpaint' if mode == 'inpaint' else 'image to image'}, seed {request.seed})…")
        try:
            outcome = await self.bridge.generate(request, cancel=cancel, save_to=None, live=True,
                                                 on_progress=lambda update: self._on_progress(cancel, update))
        except Cancelled as exc:
            self.runs_cancelled += 1
            if self.cancelled_steps and self.cancelled_steps[-1][1] == -1:
                self.cancelled_steps[-1] = (self.cancelled_steps[-1][0], exc.step)
            return
        except EaselError as exc:  # a model that cannot do this, out of memory…: said once, in one line
            self._say(f"Live: {exc}")
            return
        except Exception as exc:  # a bug: reported, live mode stays on for the next change
            self.reporter.report(f"Live mode failed unexpectedly ({type(exc).__name__}: {exc}). See details.", exc)
            self._say("")
            return
        finally:
            self._cancel = None
            self.running_changed.emit(False)
        self.runs_finished += 1
        if not self.enabled:
            return
        image = outcome.images[0]
        latency = time.perf_counter() - changed_at
        self._set_frame(LiveFrame(image, outcome.result, request.seed, mode, origin.source, revision,
                                  outcome.seconds, latency))
        self._say(f"Live: {image.width()}×{image.height()}, seed {request.seed}, {outcome.seconds:.2f} s. "
                  "Apply copies it into a new layer.")

    def _on_progress(self, cancel: threading.Event, update: ProgressUpdate) -> None:
        if cancel is self._cancel and not cancel.is_set():
            self._step = update.progress.step
            self.progressed.emit(update.progress.step, update.progress.total)

    def _set_frame(self, frame: LiveFrame | None) -> None:
        if frame is not self.frame:
            self.frame = frame
            self.frame_changed.emit()

    def _notice_once(self, text: str) -> None:
        if text not in self._noticed:
            self._noticed.add(text)
            self.reporter.notice(text)

    def _say(self, text: str) -> None:
        if text != self.message:
            self.message = text
            self.message_changed.emit(text)

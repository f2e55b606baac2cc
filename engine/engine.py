"""The Engine: one loaded model (a family's Runner), requests in, images out.

An Engine is owned by exactly one thread (the app's engine thread, or the CLI's main thread):
diffusers pipelines keep per-run scheduler state and are not thread-safe. Every public method runs
on that owning thread. The Engine knows no family: ``engine.families`` says which family runs a
model, and that family's Runner does the work with the shared core (``engine.core``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import engine  # noqa: F401  (offline environment before diffusers is imported)
from engine import devices, memory
from engine.api import (
    GenerationRequest,
    InvalidRequest,
    ModelInfo,
    Progress,
    Result,
    RuntimeSettings,
    UnsupportedModel,
    UpscaleRequest,
    random_seed,
)
from engine.core.job import Job
from engine.core.memuse import PeakMeter
from engine.families import family_for
from engine.families.base import LoadContext, Runner

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


class Engine:
    """Loads one model at a time and runs generation requests on it.

    ``device``: None picks CUDA, then Apple MPS, then CPU. ``preview_every``: a preview image is
    attached to the progress event every that many steps (and on the last step). ``library`` (an
    ``engine.models.ModelLibrary``) resolves LoRA and embedding names and finds preview decoders; without
    one, prompts cannot name add-ons. ``state_dir`` keeps the memory rung that worked per (model, GPU)
    across restarts (None: for this process only). ``keep_models``: how many models switched away
    from stay in system RAM (any family), so switching back is a move instead of a load from disk.
    """

    def __init__(self, device: str | None = None, preview_every: int = 2, library=None, state_dir=None,
                 keep_models: int = 1):
        self.device = devices.pick_device(device)
        self.dtype = devices.pick_dtype(self.device)
        self.preview_every = max(1, preview_every)
        self.library = library
        self.rungs = memory.RungMemory(Path(state_dir) / "memory-presets.json" if state_dir else None)
        self.state_dir = state_dir  # also holds the compiler cache (engine.core.speed)
        self.keep_models = keep_models
        self._runner: Runner | None = None
        self._hash: str | None = None
        self._parked: collections.OrderedDict[str, tuple[str, Runner]] = collections.OrderedDict()

    # ------------------------------------------------------------------ model

    @property
    def runner(self) -> Runner | None:
        """The loaded model's runner (None before the first load)."""
        return self._runner

    @property
    def loaded(self) -> ModelInfo | None:
        return self._runner.info if self._runner else None

    @property
    def runtime(self) -> RuntimeSettings | None:
        return self._runner.settings if self._runner else None

    def load(self, model_path: str, memory_preset: str = "auto") -> ModelInfo:
        """Load ``model_path`` (kept loaded until another model is asked for) and apply the preset.

        A file that cannot be used raises a ModelError before the current model is touched, so the
        model already loaded stays usable. Runs on the engine thread.
        """
        from engine.files.probe import check_model

        return self._load(model_path, memory_preset, check_model)

    def _load(self, model_path: str, memory_preset: str, probe) -> ModelInfo:
        path = str(Path(model_path).expanduser().resolve())
        current = self._runner
        if current is not None and current.info.path == path:
            current.placement.ensure(memory_preset, current.pipelines())
            return current.info
        info = probe(path)  # raises on a bad file while the previous model is still loaded
        family = family_for(info)
        if family is None:
            raise UnsupportedModel(info.name, info.problem or f"no model family of Easel runs this {info.kind} file")
        started = time.perf_counter()
        parked = self._parked.pop(path, None)
        self._park_current()
        if parked is not None and parked[0] == memory.model_key(path):
            runner = parked[1]
            runner.unpark(memory_preset)
            runner.load_seconds = time.perf_counter() - started
            log.info("switched back to %s (kept in RAM) in %.2fs", info.name, runner.load_seconds)
        else:
            ctx = LoadContext(device=self.device, dtype=self.dtype, library=self.library, rungs=self.rungs,
                              preset=memory_preset, preview_every=self.preview_every, hasher=self._sha256,
                              state_dir=self.state_dir)
            runner = family.load(info, ctx)
            runner.load_seconds = runner.load_seconds or time.perf_counter() - started
            log.info("loaded %s (%s) in %.2fs with preset %s", info.name, family.name, runner.load_seconds,
                     runner.settings.preset if runner.settings else "-")
        self._runner, self._hash = runner, None
        return runner.info

    def unload(self) -> None:
        """Free the loaded model (and the ones kept in RAM) and their memory. Runs on the engine thread."""
        runners = [r for _key, r in self._parked.values()]
        self._parked.clear()
        if self._runner is not None:
            runners.append(self._runner)
        self._runner = None
        for runner in runners:
            runner.close()
        devices.empty_cache(self.device)

    def _park_current(self) -> None:
        """Keep the current model in system RAM for a quick switch back, if RAM allows; else free it."""
        runner, self._runner = self._runner, None
        if runner is not None:
            if self.keep_models > 0 and _ram_allows(runner.nbytes()):
                runner.park()
                self._parked[runner.info.path] = (memory.model_key(runner.info.path), runner)
            else:
                runner.close()
        while len(self._parked) > self.keep_models:
            _path, (_key, old) = self._parked.popitem(last=False)
            old.close()
        devices.empty_cache(self.device)

    # ------------------------------------------------------------- generation

    def generate(
        self,
        request: GenerationRequest,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run ``request`` and return its images. Runs on the engine thread.

        ``on_progress`` is called on this thread after every denoising step. Setting ``cancel``
        stops the job within one step with ``Cancelled`` and no image; the engine stays ready.
        Out of device memory, the job runs again one memory preset lower (``Result.notices`` says
        so); it raises ``OutOfMemory`` only when the lowest preset fails too, with the model back
        on its original preset.
        """
        # 1. Check inputs (the request validated itself) and resolve the seed.
        request = request.replace(seed=request.seed if request.seed is not None else random_seed())
        job = Job(request, on_progress, cancel, preview_every=self.preview_every)
        job.check_cancel(0)

        # 2. Model (loaded once, kept between requests).
        load_seconds = 0.0
        if request.model:
            was_loaded = self._runner
            self.load(request.model, request.memory_preset)
            if self._runner is not was_loaded:
                load_seconds = self._runner.load_seconds
        if self._runner is None:
            raise InvalidRequest("model", "no model is loaded: choose a model first")
        runner = self._runner
        if self._hash is None:
            self._hash = self._sha256(runner.info.path)[:10]
        job.model_hash = self._hash

        # 3. The family's runner does the job with the core's guarantees.
        runner.caps.check_request(request)
        from engine.core import control

        control.check(runner.caps, request.controls)  # control inputs only where the family takes them
        from engine.core import reference

        reference.check(runner.caps, request.references)  # reference images only where the family takes them
        if request.speed != "standard" and not runner.caps.speeds:
            job.notice(f"{runner.caps.label} runs at Standard speed: Fast and Draft apply to SD models for now.")
        with PeakMeter(self.device) as meter:
            result = runner.generate(job)

        # 4. Result, with the time spent loading for this request and in all, and the memory it took.
        timings = dataclasses.replace(result.timings, load=load_seconds, total=time.perf_counter() - job.started)
        return dataclasses.replace(result, timings=timings, uses_sampler=bool(runner.caps.samplers), memory=meter.use)

    def upscale(self, request: UpscaleRequest, on_progress: ProgressCallback | None = None,
                cancel: threading.Event | None = None):
        """Enlarge ``request.image`` with a GAN upscaler file, tile by tile; returns an
        ``engine.upscale.UpscaleResult``. The upscaler is the Engine's one loaded model (kept for the
        next upscale, parked in RAM like any model). Progress after every tile; ``cancel`` stops within
        a tile with ``Cancelled`` and no image. Runs on the engine thread."""
        from engine.upscale import inspect_upscaler

        job = Job(request, on_progress, cancel)
        job.check_cancel(0, 1)
        self._load(request.model, request.memory_preset, _usable_upscaler(inspect_upscaler))
        upscale = getattr(self._runner, "upscale", None)
        if upscale is None:
            raise InvalidRequest("model", f"{self._runner.info.name} is not a GAN upscaler")
        result = upscale(job)
        job.check_cancel(1, 1)  # cancelled after the last tile: leave nothing behind
        return result

    def _sha256(self, path: str) -> str:
        if self.library is not None:
            return self.library.sha256(path)
        from engine.models.hashes import target_file
        from engine.files.probe import sha256_file

        return sha256_file(target_file(path))


def _usable_upscaler(inspect):
    """A probe for ``Engine._load`` that accepts upscaler files (``inspect``: engine.upscale's)."""

    def probe(path: str) -> ModelInfo:
        info = inspect(path)
        if info.problem:
            from engine.api import ModelError

            raise ModelError(info.path, info.problem)
        return info

    return probe


def _ram_allows(nbytes: int) -> bool:
    """Room in system RAM to keep a model of ``nbytes`` parked (and load another beside it)."""
    try:
        import psutil

        return psutil.virtual_memory().available > 2 * nbytes + 2 * 2**30
    except (ImportError, OSError):
        return nbytes < 256 * 2**20

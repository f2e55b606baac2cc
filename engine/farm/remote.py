"""RemoteEngine: the Engine's public API (``load``, ``generate``, ``loaded``, ``unload``; ``upscale`` runs here) served by one
EngineWorker actor on a Ray cluster, so the window's bridge can drive a GPU on another machine.

Progress and previews stream back through the actor's streaming generator; cancel reaches the actor's
engine within one step; results come back as ``Result`` objects and are saved by the caller, locally.
Every method runs on the caller's engine thread (the bridge's), like Engine's.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from pathlib import Path

from engine.api import Cancelled, EaselError, GenerationRequest, ModelError, ModelInfo, Result
from engine.farm import FarmError


class RemoteEngine:
    """``address``: the cluster (None: a local one, loopback only). ``folders``: model folders the worker
    searches besides its node's own (a list, or a function returning the current list: the window's folders
    change while it runs), plus each model's own folder. The worker starts on first use and stays, with its
    model loaded."""

    def __init__(self, address: str | None = None, *, folders=None, device: str | None = None,
                 data_dir: str | None = None):
        self.address = address
        self._folders = folders if callable(folders) else (lambda f=list(folders or []): f)
        self._device = device
        self._data_dir = data_dir
        self._farm = None
        self._loaded: ModelInfo | None = None
        self._hashes: dict[str, str] = {}
        self.device = "cluster"
        self.dtype = "—"

    # -- the worker ---------------------------------------------------------------------------------

    def _worker(self):
        from engine.farm.farm import Farm

        if self._farm is None:
            self._farm = Farm(self.address, workers=1, folders=list(self._folders()), device=self._device,
                              data_dir=self._data_dir if self.address is None else None)
            info = self._farm.describe()[0]
            self.device = f"{info['device']} on {info['host']}"
        elif self._farm.replace_dead():
            self._loaded = None
        return self._farm.workers[0]

    def _hash(self, model: str) -> str:
        from engine.models.hashes import HashCache

        path = str(Path(model).expanduser().resolve())
        if path not in self._hashes:
            try:
                self._hashes[path] = HashCache().sha256(path)
            except OSError as exc:
                raise ModelError(model, f"cannot read it ({exc.strerror or exc})") from None
        return self._hashes[path]

    # -- Engine's API -------------------------------------------------------------------------------

    @property
    def loaded(self) -> ModelInfo | None:
        return self._loaded

    @property
    def runtime(self):
        """The worker's device settings are not mirrored here: None (the window shows the device name)."""
        return None

    def upscale(self, request, on_progress=None, cancel: threading.Event | None = None):
        """GAN upscales run on this computer (the upscalers are small; the source and result stay
        here), on a local Engine kept for the next upscale. Engine thread."""
        if getattr(self, "_local", None) is None:
            from engine.engine import Engine

            self._local = Engine(device=self._device if self._device not in (None, "cluster") else None,
                                 keep_models=0)
        return self._local.upscale(request, on_progress, cancel)

    def load(self, model_path: str, memory_preset: str = "auto") -> ModelInfo:
        """Load the model on the worker, found there by this file's content hash. Engine thread."""
        import ray

        worker = self._worker()
        here = str(Path(model_path).expanduser().resolve().parent)
        try:
            info = ray.get(worker.actor.load.remote(self._hash(model_path), memory_preset,
                                                    [str(f) for f in self._folders()] + [here]))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, EaselError):
                raise ModelError(model_path, str(cause)) from None
            raise
        except ray.exceptions.RayActorError:
            worker.alive = False
            raise FarmError("the cluster's engine worker stopped while loading; try again") from None
        self._loaded = dataclasses.replace(info, path=str(Path(model_path).expanduser().resolve()))
        return self._loaded

    def generate(self, request: GenerationRequest, on_progress=None, cancel: threading.Event | None = None) -> Result:
        """Run ``request`` on the worker: progress (with previews) to ``on_progress`` as it streams back;
        ``cancel`` stops it within one step (``Cancelled``). Engine thread."""
        import dataclasses

        import ray

        if cancel is not None and cancel.is_set():
            raise Cancelled(0, request.steps)
        model = request.model or (self._loaded.path if self._loaded else "")
        if not model:
            from engine.api import InvalidRequest

            raise InvalidRequest("model", "no model is loaded: choose a model first")
        worker = self._worker()
        job_id = secrets.token_hex(6)
        gen = worker.actor.run.options(num_returns="streaming").remote(job_id, request, self._hash(model),
                                                                      previews=True)
        cancel_sent = False
        while True:
            if cancel is not None and cancel.is_set() and not cancel_sent:
                worker.actor.cancel.remote(job_id)
                cancel_sent = True
            ready, _ = ray.wait([gen], timeout=0.05)
            if not ready:
                continue
            try:
                event = ray.get(next(gen))
            except StopIteration:
                raise FarmError("the cluster's engine ended the job without a result") from None
            except ray.exceptions.RayActorError:
                worker.alive = False
                raise FarmError("the cluster's engine worker stopped during the job; try again") from None
            if event[0] == "progress":
                if on_progress is not None and event[3] is not None:
                    on_progress(event[3])
            elif event[0] == "done":
                result: Result = event[1]
                self._loaded = dataclasses.replace(result.model, path=str(Path(model).expanduser().resolve()))
                return dataclasses.replace(result, request=result.request.replace(model=request.model),
                                           model=self._loaded)
            elif event[0] == "cancelled":
                raise Cancelled(0, request.steps)
            else:
                raise EaselError(event[1])

    def unload(self) -> None:
        """Stop the worker (and a local cluster this engine started); a later job starts it again."""
        if self._farm is not None:
            self._farm.close()
            self._farm = None
        self._loaded = None

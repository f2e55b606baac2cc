"""The farm's worker: a Ray actor that owns one Engine (one per GPU, or one per worker process on CPU) and
keeps its model loaded between jobs.

Each method runs in the actor's process. The Engine is owned by the actor's one engine thread (diffusers
pipelines are not thread-safe); the actor is threaded (``max_concurrency=2``) only so that ``cancel`` can
arrive while ``run`` streams a job's progress.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.api import Cancelled, EaselError, GenerationRequest

CHECKPOINT_KINDS = ("checkpoint", "inpaint")


class ModelMissing(EaselError):
    """This worker has no model with the asked-for content hash in its model folders."""


class EngineWorker:
    """One Engine on one device. ``folders``: model folders to search besides this node's configured ones
    (``engine.models.configured_folders`` of ``data_dir``, this node's data folder when None)."""

    def __init__(self, name: str, folders: list[str], device: str | None = None, data_dir: str | None = None,
                 include_defaults: bool = True, threads: int | None = None):
        from engine.models import ModelLibrary, configured_folders
        from engine.paths import data_dir as resolve_data_dir

        if threads:
            import torch

            torch.set_num_threads(threads)
        root = resolve_data_dir(data_dir)
        self.name = name
        self._device = device
        self._state_dir = root
        self.library = ModelLibrary(list(folders) + configured_folders(root), include_defaults=include_defaults,
                                    state_dir=root)
        self._by_hash: dict[str, str] = {}
        self._engine = None
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-farm-engine")
        self._cancels: dict[str, threading.Event] = {}
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    # -- what this worker is and has -------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Where the worker runs (for messages): its name, host, Ray node, process id and device."""
        import ray

        from engine import devices

        return {"name": self.name, "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
                "pid": os.getpid(), "device": str(devices.pick_device(self._device))}

    def add_folders(self, folders: list[str]) -> None:
        """Search these folders too from now on (those that exist on this node)."""
        new = [f for f in folders if f not in self.library.folders and os.path.isdir(f)]
        if new:
            self.library.folders += new
            self.library.scan()

    def find_models(self, hashes: list[str]) -> dict[str, str | None]:
        """For each SHA-256, the path of a checkpoint with that content in this worker's model folders (or
        None). Hashes are remembered in this node's data folder, so a large library is hashed once."""
        wanted = {h for h in hashes if h not in self._by_hash}
        if wanted:
            self.library.scan()
            for entry in self.library.of_kind(*CHECKPOINT_KINDS):
                if not wanted:
                    break
                if entry.convertible:
                    continue
                try:
                    digest = self.library.sha256(entry.path)
                except OSError:
                    continue
                if digest in wanted:
                    self._by_hash[digest] = entry.path
                    wanted.discard(digest)
            self.library.hashes.save()
        return {h: self._by_hash.get(h) for h in hashes}

    # -- jobs ---------------------------------------------------------------------------------------

    def run(self, job_id: str, request: GenerationRequest | dict[str, Any], model_hash: str, progress_every: int = 1,
            previews: bool = False):
        """Run one job, streaming ``("progress", step, total, Progress | None)`` events (the Progress, with its
        preview image, when ``previews``) and ending with exactly one of
        ``("done", Result)``, ``("failed", message)`` (a user error: not worth retrying) or ``("cancelled",)``.
        A Ray streaming generator: the driver reads events as they are yielded."""
        with self._lock:
            if job_id in self._cancelled:  # cancel arrived before the job did
                yield ("cancelled",)
                return
            cancel = self._cancels.setdefault(job_id, threading.Event())
        try:
            path = self.find_models([model_hash])[model_hash]
            if path is None:
                yield ("failed", f"{self.name} has no model with hash {model_hash[:10]} in its model folders")
                return
            req = (request.replace(model=path) if isinstance(request, GenerationRequest)
                   else GenerationRequest.from_dict(request, model=path))
            events: queue.Queue = queue.Queue()

            def on_progress(p):
                if p.step % progress_every == 0 or p.step == p.total:
                    events.put(("progress", p.step, p.total, p if previews else None))

            future = self._engine_thread.submit(self._generate, req, on_progress, cancel)
            future.add_done_callback(lambda _f: events.put(None))  # wakes the stream the moment it ends
            while (event := events.get()) is not None:
                yield event
            try:
                result = future.result()
            except Cancelled:
                yield ("cancelled",)
                return
            except EaselError as exc:
                yield ("failed", str(exc))
                return
            yield ("done", result)
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)
                self._cancelled.discard(job_id)

    def cancel(self, job_id: str) -> None:
        """Stop ``job_id`` within one step (or before it starts). Runs while ``run`` streams."""
        with self._lock:
            event = self._cancels.get(job_id)
            if event is None:
                self._cancelled.add(job_id)
            else:
                event.set()

    def _engine_here(self):
        """On the worker's engine thread: the Engine is made here, on first use, and kept."""
        if self._engine is None:
            from engine.engine import Engine

            self._engine = Engine(device=self._device, library=self.library, state_dir=self._state_dir)
        return self._engine

    def _generate(self, request: GenerationRequest, on_progress, cancel: threading.Event):
        return self._engine_here().generate(request, on_progress=on_progress, cancel=cancel)

    def load(self, model_hash: str, memory_preset: str = "auto", folders: list[str] | None = None):
        """Load the model with this content hash (kept loaded), looking in ``folders`` too; its ModelInfo.
        ModelMissing when absent."""
        self.add_folders(list(folders or []))
        path = self.find_models([model_hash])[model_hash]
        if path is None:
            raise ModelMissing(f"{self.name} has no model with hash {model_hash[:10]} in its model folders")
        return self._engine_thread.submit(lambda: self._engine_here().load(path, memory_preset)).result()

    def unload(self) -> None:
        """Free the loaded model (the worker stays up)."""
        self._engine_thread.submit(lambda: self._engine.unload() if self._engine else None).result()

    def loaded_model(self) -> str | None:
        """The path of the model this worker keeps loaded (None before its first job)."""
        return self._engine_thread.submit(lambda: self._engine.loaded.path if self._engine and
                                          self._engine.loaded else None).result()

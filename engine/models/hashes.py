"""SHA-256 of model files, computed once and remembered by (path, size, mtime) in a JSON file.

A1111 writes the first 10 hex digits as "Model hash" and the first 12 in "Lora hashes". Hashing a
7 GB file takes seconds to a minute, so the library hashes in the background and everything that
needs a hash asks this cache first. Thread-safe: the I/O thread hashes while the engine thread reads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from engine.api import ModelError
from engine.files.safe import read_json
from engine.lazy import LazyModule
from engine.outputs import write_text_atomic

probe = LazyModule("engine.files.probe")  # first used by a hash, on a background thread after start-up

log = logging.getLogger(__name__)


class HashCache:
    """Remembered SHA-256s; ``path=None`` keeps them in memory only."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._data: dict[str, dict] = {}
        self._dirty = False
        if self.path and self.path.is_file():
            try:
                loaded = read_json(self.path)
                if isinstance(loaded, dict):
                    self._data = {k: v for k, v in loaded.items() if isinstance(v, dict)}
            except (OSError, ValueError):
                log.warning("hash cache %s unreadable; starting afresh", self.path)

    def cached(self, path: str) -> str | None:
        """The remembered hash if the file is unchanged since, else None (any thread, no hashing)."""
        key = target_file(path)
        try:
            st = os.stat(key)
        except OSError:
            return None
        with self._lock:
            entry = self._data.get(key)
        if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return entry.get("sha256")
        return None

    def sha256(self, path: str) -> str:
        """The file's SHA-256, from the cache or by reading it (seconds for a large file: off the GUI
        thread). For a diffusers folder, of its UNet weights (as ``engine.files.probe.model_hash``)."""
        hit = self.cached(path)
        if hit:
            return hit
        key = target_file(path)
        st = os.stat(key)
        digest = probe.sha256_file(key)
        with self._lock:
            self._data[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache atomically (if anything changed)."""
        if not self.path or not self._dirty:
            return
        with self._lock:
            text = json.dumps(self._data, indent=0, sort_keys=True)
            self._dirty = False
        try:
            write_text_atomic(self.path, text)
        except OSError:
            log.warning("could not save the hash cache %s", self.path, exc_info=True)


def target_file(path: str) -> str:
    """The file whose hash stands for ``path`` (``engine.files.probe.hash_target``), else ``path``."""
    try:
        return str(probe.hash_target(path))
    except ModelError:
        return str(path)

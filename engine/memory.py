"""Out-of-memory recovery: the ladder of memory presets, and the rung that worked per (model, GPU).

When a job runs out of device memory the engine frees what it can, moves the model one rung down
(fast -> balanced -> low -> minimal) and runs the same job again. The rung that finally worked is
written to a small JSON file, so the next ``auto`` load of that model on that GPU starts there and
does not fail first. Plain stdlib; the engine calls it on its own thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from engine.files.safe import read_json
from engine.outputs import write_text_atomic

log = logging.getLogger(__name__)

LADDER = ("fast", "balanced", "low", "minimal")


def lower(preset: str) -> str | None:
    """The next rung down, or None at the bottom."""
    i = LADDER.index(preset)
    return LADDER[i + 1] if i + 1 < len(LADDER) else None


def lowest(a: str, b: str) -> str:
    """The lower (more memory-saving) of two presets."""
    return a if LADDER.index(a) >= LADDER.index(b) else b


def gpu_key(device: str) -> str:
    """Names the device's card: CUDA name and memory size; "cpu"/"mps" otherwise."""
    if device.startswith("cuda"):
        import torch

        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{props.name} {props.total_memory / 2**30:.0f} GiB"
    return device.split(":")[0]


def model_key(path: str) -> str:
    """A model identity that survives a restart: path, size, mtime (hashing a 7 GB file would take
    longer than the job)."""
    target = Path(path)
    probe = target / "model_index.json" if target.is_dir() else target
    try:
        st = probe.stat()
        return f"{os.path.normcase(str(target))}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return os.path.normcase(str(target))


class RungMemory:
    """The memory preset that worked per (model, GPU), kept in ``path`` (None: in memory only)."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._data: dict[str, str] = {}
        if self.path and self.path.is_file():
            try:
                loaded = read_json(self.path)
                if isinstance(loaded, dict):
                    self._data = {k: v for k, v in loaded.items() if v in LADDER}
            except (OSError, ValueError):
                log.warning("memory-preset file %s unreadable; starting afresh", self.path)

    @staticmethod
    def _key(model: str, gpu: str) -> str:
        return f"{gpu}::{model_key(model)}"

    def get(self, model: str, gpu: str) -> str | None:
        with self._lock:
            return self._data.get(self._key(model, gpu))

    def remember(self, model: str, gpu: str, preset: str) -> None:
        with self._lock:
            self._data[self._key(model, gpu)] = preset
            text = json.dumps(self._data, indent=1, sort_keys=True)
        if not self.path:
            return
        try:
            write_text_atomic(self.path, text)
        except OSError:
            log.warning("could not save %s", self.path, exc_info=True)

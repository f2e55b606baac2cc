"""The model library as the window sees it: the checkpoints for the model picker, and every other
file (LoRAs, embeddings, VAEs, upscalers, unusable files with the reason) for the models panel.

Scanning is ``engine.models`` (headers only, cached) run on the bridge's I/O thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.api import ModelInfo

log = logging.getLogger(__name__)

GENERATOR_KINDS = ("checkpoint", "inpaint")


def candidate_paths(folder: Path) -> list[Path]:
    """``*.safetensors`` files and diffusers folders (with model_index.json) in ``folder`` and one level down."""
    found: list[Path] = []
    if not folder.is_dir():
        return found
    if (folder / "model_index.json").is_file():
        return [folder]
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() == ".safetensors":
            found.append(entry)
        elif entry.is_dir():
            if (entry / "model_index.json").is_file():
                found.append(entry)
                continue
            try:
                children = sorted(entry.iterdir(), key=lambda p: p.name.lower())
            except OSError:
                continue
            for child in children:
                if child.name.startswith("."):
                    continue
                if child.is_file() and child.suffix.lower() == ".safetensors":
                    found.append(child)
                elif child.is_dir() and (child / "model_index.json").is_file():
                    found.append(child)
    return found


def _inspect(path: Path) -> ModelInfo:
    try:
        from engine.modelfiles import inspect_model
    except ImportError:  # the engine's inspector has not landed: list by name
        return ModelInfo(
            path=str(path),
            name=path.stem if path.is_file() else path.name,
            kind="checkpoint",
            family="",
            format="diffusers" if path.is_dir() else "safetensors",
            size_bytes=path.stat().st_size if path.is_file() else 0,
        )
    return inspect_model(path)


def scan_library(library) -> list:
    """Runs on the I/O thread: the library's entries (every kind), scanned afresh."""
    return library.scan()


def scan_folders(folders: list[str]) -> list[ModelInfo]:
    """Runs on the I/O thread. Generators first (usable before unusable), then by name; no duplicates."""
    seen: set[str] = set()
    models: list[ModelInfo] = []
    for folder in folders:
        for path in candidate_paths(Path(folder).expanduser()):
            key = str(path.resolve())
            if key in seen:
                continue
            seen.add(key)
            try:
                info = _inspect(path)
            except Exception as exc:  # inspect_model should never raise; be safe anyway
                log.warning("inspecting %s failed: %s", path, exc)
                continue
            if info.kind in GENERATOR_KINDS or info.problem:
                models.append(info)
    models.sort(key=lambda m: (not m.usable, m.name.lower()))
    return models


class ModelCatalog(QObject):
    models_changed = Signal(list)
    entries_changed = Signal(list)  # every ModelEntry, all kinds
    scanning_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.models: list[ModelInfo] = []
        self.entries: list = []
        self.scanning = False

    def set_entries(self, entries: list) -> None:
        """The library's entries; the picker gets the checkpoints (and checkpoint-like files that fail)."""
        self.entries = list(entries)
        models = [e.info for e in entries if e.kind in GENERATOR_KINDS or (e.kind == "unknown" and not e.convertible)]
        models.sort(key=lambda m: (not m.usable, m.name.lower()))
        self.entries_changed.emit(self.entries)
        self.set_models(models)

    def of_kind(self, *kinds: str) -> list:
        return [e for e in self.entries if e.kind in kinds]

    @property
    def usable(self) -> list[ModelInfo]:
        return [m for m in self.models if m.usable]

    def find(self, path: str) -> ModelInfo | None:
        return next((m for m in self.models if m.path == path), None)

    def set_scanning(self, scanning: bool) -> None:
        if scanning != self.scanning:
            self.scanning = scanning
            self.scanning_changed.emit(scanning)

    def set_models(self, models: list[ModelInfo]) -> None:
        self.models = list(models)
        self.models_changed.emit(self.models)

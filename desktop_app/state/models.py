"""The model library as the window sees it: the checkpoints for the model picker, and every other
file (LoRAs, embeddings, VAEs, upscalers, unusable files with the reason) for the models panel.

Scanning is ``engine.models`` (headers only, cached) run on the bridge's I/O thread.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal

from engine.api import ModelInfo

log = logging.getLogger(__name__)

GENERATOR_KINDS = ("checkpoint", "inpaint")


def scan_library(library) -> list:
    """Runs on the I/O thread: the library's entries (every kind), scanned afresh."""
    return library.scan()


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

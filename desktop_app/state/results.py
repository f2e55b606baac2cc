"""This session's results, newest last, and which one the image view shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from engine.api import GenerationRequest


@dataclass(frozen=True)
class ResultItem:
    image: QImage
    path: Path | None
    seed: int
    request: GenerationRequest
    seconds: float


class SessionResults(QObject):
    result_added = Signal(object)  # ResultItem
    current_changed = Signal(int)  # index, -1 for none

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.items: list[ResultItem] = []
        self._current = -1

    @property
    def current(self) -> int:
        return self._current

    def current_item(self) -> ResultItem | None:
        return self.items[self._current] if 0 <= self._current < len(self.items) else None

    def add(self, item: ResultItem) -> None:
        self.items.append(item)
        self.result_added.emit(item)

    def select(self, index: int) -> None:
        if not self.items:
            return
        index = max(0, min(len(self.items) - 1, index))
        if index != self._current:
            self._current = index
            self.current_changed.emit(index)

    def select_relative(self, delta: int) -> None:
        self.select((self._current if self._current >= 0 else len(self.items)) + delta)

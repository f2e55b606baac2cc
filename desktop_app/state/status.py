"""What the status bar shows: engine state, device, dtype, memory preset, model, last time."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

ENGINE_STATE_TEXT = {
    "stopped": "Engine not started",
    "starting": "Loading torch and diffusers…",
    "ready": "Engine ready",
    "failed": "Engine failed to start",
    "closed": "Engine stopped",
}


class EngineStatus(QObject):
    engine_state_changed = Signal(str)
    runtime_changed = Signal(dict)
    last_seconds_changed = Signal(float)
    activity_changed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.engine_state = "stopped"
        self.runtime: dict = {}
        self.last_seconds: float | None = None
        self.activity = ""

    def set_engine_state(self, state: str) -> None:
        if state != self.engine_state:
            self.engine_state = state
            self.engine_state_changed.emit(state)

    def set_runtime(self, runtime: dict) -> None:
        self.runtime = dict(runtime)
        self.runtime_changed.emit(self.runtime)

    def set_last_seconds(self, seconds: float) -> None:
        self.last_seconds = seconds
        self.last_seconds_changed.emit(seconds)

    def set_activity(self, text: str) -> None:
        if text != self.activity:
            self.activity = text
            self.activity_changed.emit(text)

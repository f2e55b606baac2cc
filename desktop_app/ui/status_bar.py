"""Status bar items: engine state, device, dtype, memory preset, model, last generation time."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from desktop_app.state.families import kind_label
from desktop_app.state.status import ENGINE_STATE_TEXT, EngineStatus
from desktop_app.ui.labels import ElidedLabel


class StatusBarWidget(QStatusBar):
    def __init__(self, status: EngineStatus, parent: QWidget | None = None):
        super().__init__(parent)
        self._status = status
        self.engine_label = _label("Whether the engine (torch + diffusers) is loaded")
        self.activity_label = ElidedLabel()  # a long message is cut with …, never widening the window
        self.activity_label.setContentsMargins(6, 0, 6, 0)
        self.activity_label.setToolTip("What the engine is doing")
        self.device_label = _label("The device the model runs on")
        self.dtype_label = _label("The number format of the weights")
        self.preset_label = _label("The memory preset in use")
        self.model_label = _label("The loaded model")
        self.time_label = _label("How long the last generation took")
        self.addWidget(self.engine_label)
        self.addWidget(self.activity_label, 1)
        for w in (self.device_label, self.dtype_label, self.preset_label, self.model_label, self.time_label):
            self.addPermanentWidget(w)
        status.engine_state_changed.connect(self._on_status_engine_state_changed)
        status.runtime_changed.connect(self._on_status_runtime_changed)
        status.last_seconds_changed.connect(lambda s: self.time_label.setText(f"Last: {s:.1f} s"))
        status.activity_changed.connect(lambda text: self.activity_label.setText(text)
                                        or self.activity_label.setToolTip(text or "What the engine is doing"))
        self._on_status_engine_state_changed(status.engine_state)
        self._on_status_runtime_changed(status.runtime)
        self.time_label.setText("Last: —")

    def _on_status_engine_state_changed(self, state: str) -> None:
        self.engine_label.setText(ENGINE_STATE_TEXT.get(state, state))

    def _on_status_runtime_changed(self, runtime: dict) -> None:
        self.device_label.setText(f"Device: {runtime.get('device', '—')}")
        self.dtype_label.setText(f"dtype: {runtime.get('dtype', '—')}")
        self.preset_label.setText(f"Memory: {runtime.get('preset', '—')}")
        kind = kind_label(runtime.get("model_info"))
        self.model_label.setText(f"Model: {runtime.get('model', '—')}" + (f" · {kind}" if kind else ""))


def _label(tip: str) -> QLabel:
    label = QLabel()
    label.setToolTip(tip)
    label.setContentsMargins(6, 0, 6, 0)
    return label

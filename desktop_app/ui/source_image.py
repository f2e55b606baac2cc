"""A row in the prompt panel showing the img2img / inpaint source image, its strength, and a way back."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QToolButton, QWidget

from desktop_app.state.params import GenerationParameters


class SourceImageWidget(QWidget):
    def __init__(self, params: GenerationParameters, clear, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("SourceImageWidget")
        self._params = params
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.01, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setToolTip("Denoising strength: how much of the source image to change (0.3 subtle, 0.75 strong)")
        self.clear_button = QToolButton()
        self.clear_button.setText("✕")
        self.clear_button.setToolTip("Stop using the source image (back to text to image)")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.strength_spin)
        layout.addWidget(self.clear_button)
        self.clear_button.clicked.connect(clear)
        self.strength_spin.valueChanged.connect(lambda v: params.set("strength", v))
        params.strength_changed.connect(self.strength_spin.setValue)
        params.mode_changed.connect(self._refresh)
        params.init_image_path_changed.connect(self._refresh)
        self._refresh()

    def _refresh(self, *_args) -> None:
        p = self._params
        self.setVisible(p.mode != "txt2img")
        self.strength_spin.setValue(p.strength)
        name = Path(p.init_image_path).name if p.init_image_path else "(none)"
        self.label.setText(f"{p.mode} from {name}")
        self.label.setToolTip(p.init_image_path)

"""Shown instead of the image while no usable model is found: how to add one, or make a demo model."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget


class FirstRunPanel(QWidget):
    add_folder_requested = Signal()
    demo_model_requested = Signal()

    def __init__(self, models_dir: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("FirstRunPanel")
        title = QLabel("No model yet")
        title.setObjectName("FirstRunTitle")
        body = QLabel(
            "<p>Easel makes images with models stored on this computer. It never downloads anything.</p>"
            "<p><b>Add a folder of models</b>: a folder holding <code>.safetensors</code> checkpoints "
            "(SD 1.x, SD 2.x, SDXL, Turbo) or diffusers model folders (those, aMUSEd, DeepFloyd IF, "
            "Stable unCLIP). Easel looks in the folder and one level "
            "below it; nothing is copied, so models you already have for other apps can stay where they are "
            "(for example <code>stable-diffusion-webui/models/Stable-diffusion</code> or <code>ComfyUI/models/checkpoints</code>).</p>"
            f"<p>Models placed in <code>{models_dir}</code> are found too.</p>"
            "<p><b>Just want to try the app?</b> Make a tiny demo model (a few MB of random weights: its images "
            "are coloured noise, but every part of the app works). From a terminal: "
            f"<code>easel make-test-model {models_dir}/easel-demo-tiny</code></p>"
        )
        body.setWordWrap(True)
        body.setTextFormat(Qt.TextFormat.RichText)
        body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.add_button = QPushButton("Add folder of models…")
        self.add_button.setToolTip("Choose a folder with .safetensors checkpoints or diffusers model folders (Ctrl+Shift+O)")
        self.demo_button = QPushButton("Make a demo model")
        self.demo_button.setToolTip("Build a tiny random-weight model in the data folder (needs the engine loaded)")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        box = QVBoxLayout()
        box.addWidget(title)
        box.addWidget(body)
        box.addLayout(buttons)
        inner = QWidget()
        inner.setLayout(box)
        inner.setMaximumWidth(620)
        root = QVBoxLayout(self)
        root.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(inner)
        row.addStretch(1)
        root.addLayout(row)
        root.addStretch(2)
        self.add_button.clicked.connect(self.add_folder_requested)
        self.demo_button.clicked.connect(self.demo_model_requested)

    def set_engine_ready(self, ready: bool) -> None:
        self.demo_button.setEnabled(ready)

"""Extend canvas (outpaint): how many pixels on each side, and how the new area is pre-filled."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

FILL_LABELS = (("blur", "Stretched edges, blurred outwards"), ("edge", "Stretched edges"), ("colour", "Average colour"))


class ExtendCanvasDialog(QDialog):
    def __init__(self, width: int, height: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Extend canvas")
        self._size = (width, height)
        self.spins: dict[str, QSpinBox] = {}
        form = QFormLayout()
        for side, default in (("left", 0), ("top", 0), ("right", 256), ("bottom", 0)):
            spin = QSpinBox()
            spin.setRange(0, 8192)
            spin.setSingleStep(64)
            spin.setSuffix(" px")
            spin.setValue(default)
            spin.valueChanged.connect(self._update)
            self.spins[side] = spin
            form.addRow(side.capitalize(), spin)
        self.fill_combo = QComboBox()
        for key, label in FILL_LABELS:
            self.fill_combo.addItem(label, key)
        self.fill_combo.setToolTip("What the new area starts as, before it is generated")
        form.addRow("Pre-fill", self.fill_combo)
        self.result_label = QLabel()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        box = QVBoxLayout(self)
        box.addWidget(QLabel("The new area becomes the mask; Generate (Inpaint) then fills it."))
        box.addLayout(form)
        box.addWidget(self.result_label)
        box.addWidget(buttons)
        self._update()

    def amounts(self) -> tuple[int, int, int, int]:
        s = self.spins
        return s["left"].value(), s["top"].value(), s["right"].value(), s["bottom"].value()

    def fill(self) -> str:
        return self.fill_combo.currentData()

    def _update(self) -> None:
        l, t, r, b = self.amounts()
        w, h = self._size
        self.result_label.setText(f"{w}×{h} → {w + l + r}×{h + t + b}")
        self.ok_button.setEnabled(bool(l or t or r or b))

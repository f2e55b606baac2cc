"""The Batch / grid… dialog: up to three axes over the current settings, where to run them, and progress."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.grid_batch import GridBatch, GridLauncher
from engine.api import EaselError
from engine.grid import AXES, AXIS_HELP


class GridDialog(QDialog):
    """Axes (X columns, Y rows, Z panels), "This machine" / "Farm" and a progress line per job."""

    def __init__(self, launcher: GridLauncher, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("GridDialog")
        self.setWindowTitle("Batch / grid")
        self._launcher = launcher
        self.batch: GridBatch | None = None
        intro = QLabel("Images over the current prompt and settings, one per cell, each saved in the gallery, "
                       "plus a labelled grid image.")
        intro.setWordWrap(True)
        grid = QGridLayout()
        self.axis_combos: list[QComboBox] = []
        self.value_edits: list[QLineEdit] = []
        for row, (label, example) in enumerate((("X (columns)", ("seed", "1-4")), ("Y (rows)", ("cfg", "4,7")),
                                                ("Z (panels)", ("", "")))):
            combo = QComboBox()
            combo.addItem("—", "")
            for name in AXES:
                combo.addItem(name, name)
            combo.setCurrentIndex(combo.findData(example[0]))
            edit = QLineEdit(example[1])
            edit.setPlaceholderText("values, separated by commas")
            combo.currentIndexChanged.connect(lambda _i, c=combo, e=edit: e.setToolTip(AXIS_HELP.get(c.currentData(), "")))
            combo.currentIndexChanged.connect(self._on_axes_changed)
            edit.textChanged.connect(self._on_axes_changed)
            grid.addWidget(QLabel(label), row, 0)
            grid.addWidget(combo, row, 1)
            grid.addWidget(edit, row, 2)
            self.axis_combos.append(combo)
            self.value_edits.append(edit)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.local_radio = QRadioButton("This machine (the queue)")
        self.farm_radio = QRadioButton("Farm: a local Ray cluster, every GPU here")
        self.address_radio = QRadioButton("Farm at")
        self.address_edit = QLineEdit()
        self.address_edit.setPlaceholderText("head-node:6379")
        self.where_group = QButtonGroup(self)
        for b in (self.local_radio, self.farm_radio, self.address_radio):
            self.where_group.addButton(b)
        self.local_radio.setChecked(True)
        self.farm_hint_label = QLabel(launcher.farm_hint)
        self.farm_hint_label.setObjectName("FarmHint")
        farm_row = QHBoxLayout()
        farm_row.addWidget(self.address_radio)
        farm_row.addWidget(self.address_edit, 1)
        for w in (self.farm_radio, self.address_radio, self.address_edit):
            w.setVisible(launcher.farm_available)
        self.farm_hint_label.setVisible(not launcher.farm_available)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.submit)
        self.cancel_button = QPushButton("Cancel batch")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        close = QPushButton("Close")
        close.clicked.connect(self.hide)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.cancel_button, self.run_button, close):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(grid)
        layout.addWidget(self.summary_label)
        layout.addWidget(QLabel("Run on:"))
        layout.addWidget(self.local_radio)
        layout.addWidget(self.farm_radio)
        layout.addLayout(farm_row)
        layout.addWidget(self.farm_hint_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self.resize(560, self.sizeHint().height())
        self._on_axes_changed()

    def axes(self) -> list[tuple[str, str]]:
        return [(c.currentData() or "", e.text()) for c, e in zip(self.axis_combos, self.value_edits)]

    def farm_choice(self) -> str | None:
        if self.farm_radio.isChecked():
            return ""
        if self.address_radio.isChecked():
            return self.address_edit.text().strip()
        return None

    def _on_axes_changed(self, *_args) -> None:
        try:
            plan = self._launcher.plan(self.axes())
        except EaselError as exc:
            self.summary_label.setText(str(exc))
            self.run_button.setEnabled(False)
            return
        nx, ny, nz = plan.shape
        self.summary_label.setText(f"{len(plan.jobs)} image(s): {nx} × {ny}" + (f" × {nz}" if nz > 1 else "") +
                                   f", seed {plan.base.seed} unless an axis changes it.")
        self.run_button.setEnabled(self.batch is None)

    def submit(self) -> GridBatch | None:
        """Start the batch (the Run button)."""
        farm = self.farm_choice()
        if farm == "" and self.address_radio.isChecked():
            self.status_label.setText("Give the cluster's address (host:port), or pick the local farm.")
            return None
        try:
            batch = self._launcher.start(self.axes(), farm)
        except EaselError as exc:
            self.status_label.setText(str(exc))
            return None
        self.batch = batch
        batch.progress_changed.connect(self._on_batch_progress_changed)
        batch.finished.connect(self._on_batch_finished)
        batch.failed.connect(self._on_batch_failed)
        self.progress_bar.setRange(0, batch.total)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        self.status_label.setText(f"Running {batch.total} job(s)" + (" on the farm…" if farm is not None else "…"))
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        return batch

    def _on_cancel_clicked(self) -> None:
        if self.batch is not None:
            self.batch.cancel()
            self.status_label.setText("Cancelling: no new jobs start; finished images are kept.")

    def _on_batch_progress_changed(self, done: int, total: int, line: str) -> None:
        self.progress_bar.setValue(done)
        self.status_label.setText(f"{done} of {total}: {line}")

    def _on_batch_finished(self, grid_path: str) -> None:
        run = self.batch.run if self.batch else None
        self.batch = None
        self.cancel_button.setEnabled(False)
        self.run_button.setEnabled(True)
        if run is not None:
            self.progress_bar.setValue(run.done + len(run.failures) + len(run.cancelled))
        made = run.done if run else 0
        failed = f", {len(run.failures)} failed" if run and run.failures else ""
        self.status_label.setText(f"Done: {made} image(s){failed}; the grid is in the gallery." if grid_path
                                  else "Nothing was made" + (f": {next(iter(run.failures.values()))}"
                                                             if run and run.failures else "."))

    def _on_batch_failed(self, message: str) -> None:
        self.status_label.setText(message)

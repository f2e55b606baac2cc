"""This session's results as a strip of thumbnails; clicking one shows it."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

from desktop_app.state.results import ResultItem, SessionResults

THUMB = 96


class ResultsStripWidget(QListWidget):
    def __init__(self, results: SessionResults, parent: QWidget | None = None):
        super().__init__(parent)
        self._results = results
        self.setObjectName("ResultsStrip")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setSpacing(4)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumHeight(THUMB + 28)
        self.setMaximumHeight(THUMB + 48)
        self.setToolTip("This session's images (Alt+Left / Alt+Right to step through). Each is saved as a PNG in the outputs folder.")
        self.setAccessibleName("Results")

        results.result_added.connect(self._on_results_result_added)
        results.current_changed.connect(self._on_results_current_changed)
        self.currentRowChanged.connect(self._on_current_row_changed)

    def _on_results_result_added(self, item: ResultItem) -> None:
        pixmap = QPixmap.fromImage(item.image).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        entry = QListWidgetItem(QIcon(pixmap), f"#{len(self._results.items)}")
        where = str(item.path) if item.path else "not saved"
        entry.setToolTip(f"{item.request.prompt[:200]}\nSeed {item.seed} · {item.request.width}×{item.request.height} · {item.request.steps} steps\n{where}")
        self.addItem(entry)
        self.scrollToItem(entry)

    def _on_results_current_changed(self, index: int) -> None:
        if self.currentRow() != index:
            self.setCurrentRow(index)

    def _on_current_row_changed(self, row: int) -> None:
        if row >= 0:
            self._results.select(row)

"""“Download a model…”: a Hugging Face repo id (with a few suggested starters), progress, cancel."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.downloads import DownloadState


class DownloadDialog(QDialog):
    """Non-modal; closing it does not stop a download (Cancel does)."""

    def __init__(self, downloads: DownloadState, parent: QWidget | None = None):
        super().__init__(parent)
        from engine.download import SUGGESTED

        self.setWindowTitle("Download a model")
        self._downloads = downloads
        self.repo_combo = QComboBox()
        self.repo_combo.setEditable(True)
        self.repo_combo.setToolTip("A Hugging Face repo id, like stabilityai/sd-turbo")
        for repo, what in SUGGESTED:
            self.repo_combo.addItem(repo, what)
        self.about_label = QLabel()
        self.about_label.setWordWrap(True)
        self.note = QLabel("Files go into the shared Hugging Face cache, where other tools find them too. "
                           "Easel goes online only for this download.")
        self.note.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.start_button = QPushButton("Download")
        self.cancel_button = QPushButton("Cancel download")
        self.close_button = QPushButton("Close")

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        root = QVBoxLayout(self)
        root.addWidget(QLabel("Model (Hugging Face repo id)"))
        root.addWidget(self.repo_combo)
        root.addWidget(self.about_label)
        root.addWidget(self.note)
        root.addWidget(self.progress)
        root.addWidget(self.status_label)
        root.addLayout(buttons)
        self.resize(560, 260)

        self.repo_combo.editTextChanged.connect(self._on_repo_combo_text_changed)
        self.start_button.clicked.connect(lambda: downloads.start(self.repo_combo.currentText()))
        self.cancel_button.clicked.connect(downloads.cancel)
        self.close_button.clicked.connect(self.close)
        downloads.state_changed.connect(self._on_downloads_state_changed)
        downloads.progress_changed.connect(self._on_downloads_progress_changed)
        self._on_repo_combo_text_changed(self.repo_combo.currentText())
        self._on_downloads_state_changed(downloads.state, downloads.message)

    def _on_repo_combo_text_changed(self, text: str) -> None:
        index = self.repo_combo.findText(text.strip())
        about = self.repo_combo.itemData(index) if index >= 0 else ""
        self.about_label.setText(about)
        self.about_label.setVisible(bool(about))

    def _on_downloads_state_changed(self, state: str, message: str) -> None:
        busy = self._downloads.busy
        self.start_button.setEnabled(not busy)
        self.repo_combo.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.status_label.setText(message)
        if state == "done":
            self.progress.setValue(self.progress.maximum())

    def _on_downloads_progress_changed(self, done: int, total: int) -> None:
        self.progress.setValue(int(1000 * done / total) if total else 0)
        self.progress.setFormat(f"{done / 1e6:.1f} of {total / 1e6:.1f} MB" if total else "")

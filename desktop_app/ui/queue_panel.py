"""The queue: the running job and the pending ones, with cancel, reorder and clear."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QToolButton, QVBoxLayout, QWidget

from desktop_app.state.jobs import Job, JobQueue, JobStatus, ProgressInfo


RECENT_SHOWN = 5  # finished, failed and cancelled jobs kept in the list under the live ones


class QueuePanel(QWidget):
    def __init__(self, queue: JobQueue, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("QueuePanel")
        self._queue = queue
        self.title = QLabel("Queue")
        self.title.setStyleSheet("font-weight: 600;")
        self.list = QListWidget()
        self.list.setAccessibleName("Queue")
        self.list.setToolTip("Jobs run in order, one at a time. Select one to cancel or move it.")
        self.list.setWordWrap(True)
        self.cancel_button = _button("✕", "Cancel the selected job (Delete); the running one stops within a step")
        self.up_button = _button("▲", "Run the selected pending job sooner (Ctrl+Up)")
        self.down_button = _button("▼", "Run the selected pending job later (Ctrl+Down)")
        self.clear_button = _button("Clear", "Remove every pending job (Ctrl+Shift+Delete)")

        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        for b in (self.cancel_button, self.up_button, self.down_button, self.clear_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        root = QVBoxLayout(self)
        root.setContentsMargins(4, 8, 4, 8)
        root.addWidget(self.title)
        root.addWidget(self.list, 1)
        root.addLayout(buttons)

        self.cancel_button.clicked.connect(self.cancel_selected)
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(1))
        self.clear_button.clicked.connect(queue.clear_pending)
        self.list.currentRowChanged.connect(lambda _r: self._update_buttons())
        for signal in (queue.job_added, queue.job_removed, queue.job_started):
            signal.connect(lambda _job: self._rebuild())
        queue.jobs_reordered.connect(self._rebuild)
        queue.job_cancelling.connect(lambda _job: self._rebuild())
        queue.job_progressed.connect(self._on_queue_job_progressed)
        self._rebuild()

    def selected_job(self) -> Job | None:
        item = self.list.currentItem()
        if item is None:
            return None
        job_id = item.data(Qt.ItemDataRole.UserRole)
        return next((j for j in self._queue.jobs() if j.id == job_id), None)

    def cancel_selected(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._queue.cancel(job.id)

    def move_selected(self, delta: int) -> None:
        job = self.selected_job()
        if job is not None and self._queue.move(job.id, delta):
            self._select(job.id)

    def _rebuild(self) -> None:
        selected = self.selected_job()
        self.list.blockSignals(True)
        self.list.clear()
        for job in self._queue.jobs():
            item = QListWidgetItem(self._label(job))
            item.setData(Qt.ItemDataRole.UserRole, job.id)
            item.setToolTip(job.details)
            self.list.addItem(item)
        # What just left the queue stays in view (greyed), so an Esc visibly leaves "Cancelled".
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        for job in reversed(self._queue.history[-RECENT_SHOWN:]):
            item = QListWidgetItem(self._label(job))
            item.setToolTip(job.error or job.details)
            item.setForeground(grey)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)  # not selectable: nothing to cancel or move
            self.list.addItem(item)
        self.list.blockSignals(False)
        if selected is not None:
            self._select(selected.id)
        n = len(self._queue.pending)
        self.title.setText("Queue" + (f" ({n} waiting)" if n else ""))
        self._update_buttons()

    def _label(self, job: Job, info: ProgressInfo | None = None) -> str:
        if job.status is JobStatus.RUNNING and job.cancel.is_set():
            return f"✕ Cancelling… {job.title}"
        if job.status is JobStatus.CANCELLED:
            at = f" at step {job.cancelled_at_step}" if job.cancelled_at_step else ""
            return f"✕ Cancelled{at} · {job.title}"
        if job.status is JobStatus.DONE:
            return f"✓ Done · {job.title}"
        if job.status is JobStatus.FAILED:
            return f"! Failed · {job.title}"
        if job.status is JobStatus.RUNNING:
            where = f" · {int(info.fraction * 100)}%" if info else ""
            return f"▶ {job.title}{where}"
        return f"○ {job.title}"

    def _select(self, job_id: int) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == job_id:
                self.list.setCurrentRow(i)
                return

    def _on_queue_job_progressed(self, job: Job, info: ProgressInfo) -> None:
        if job.cancel.is_set():
            return
        if self.list.count() and self.list.item(0).data(Qt.ItemDataRole.UserRole) == job.id:
            self.list.item(0).setText(self._label(job, info))

    def _update_buttons(self) -> None:
        job = self.selected_job()
        pending = job is not None and job.status is JobStatus.PENDING
        self.cancel_button.setEnabled(job is not None)
        self.up_button.setEnabled(pending)
        self.down_button.setEnabled(pending)
        self.clear_button.setEnabled(bool(self._queue.pending))


def _button(text: str, tip: str) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    return b

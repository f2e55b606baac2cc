"""Progress of the running job: step / total, it/s, ETA, and Cancel."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from desktop_app.state.jobs import Job, JobQueue, ProgressInfo


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA —"
    s = int(round(seconds))
    return f"ETA {s // 60}:{s % 60:02d}"


def progress_text(info: ProgressInfo) -> str:
    """ "Image 1/2 · Stage 2/3 · Stage II 256 px · Step 7/20" (the parts that apply)."""
    parts = []
    if info.batch_count > 1:
        parts.append(f"Image {info.image_index + 1}/{info.batch_count}")
    if info.stages > 1:
        parts.append(f"Stage {info.stage}/{info.stages}")
    if info.stage_name:  # also a one-stage job's preparation ("Optimising for this GPU, once")
        parts.append(info.stage_name)
    parts.append(f"{info.unit} {info.step}/{info.total}")
    return " · ".join(parts)


def detail_text(info: ProgressInfo) -> str:
    """ "2.5 it/s · ETA 0:12"; the speed is left out while it is unknown (the first step of a stage)."""
    unit = "tile" if info.unit == "Tile" else "it"
    if info.rate <= 0:
        return format_eta(info.eta)
    rate = f"{info.rate:.1f} {unit}/s" if info.rate >= 1 else f"{1 / info.rate:.1f} s/{unit}"
    return f"{rate} · {format_eta(info.eta)}"


class ProgressWidget(QWidget):
    def __init__(self, queue: JobQueue, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ProgressWidget")
        self._queue = queue
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setFormat("Idle")
        self.bar.setValue(0)
        self.bar.setToolTip("Progress of the running job: step / total, iterations per second, time left")
        self.detail = QLabel("")
        self.detail.setToolTip("Speed and time left")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job within one step; it leaves no image (Esc)")
        self.cancel_button.setEnabled(False)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 2, 8, 2)
        row.addWidget(self.bar, 1)
        row.addWidget(self.detail)
        row.addWidget(self.cancel_button)

        self.cancel_button.clicked.connect(queue.cancel_running)
        queue.job_started.connect(self._on_queue_job_started)
        queue.job_progressed.connect(self._on_queue_job_progressed)
        queue.phase_changed.connect(self._on_queue_phase_changed)
        queue.job_removed.connect(self._on_queue_job_removed)
        queue.job_cancelling.connect(self._on_queue_job_cancelling)

    def _on_queue_job_started(self, job: Job) -> None:
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        self.bar.setFormat("Starting…")
        self.detail.setText("")

    def _on_queue_job_cancelling(self, job: Job) -> None:
        self.cancel_button.setEnabled(False)
        self.bar.setFormat("Cancelling…")

    def _on_queue_phase_changed(self, text: str) -> None:
        running = self._queue.running
        if running is not None and not running.cancel.is_set() and self.bar.value() == 0:
            self.bar.setFormat(text)

    def _on_queue_job_progressed(self, job: Job, info: ProgressInfo) -> None:
        self.bar.setValue(int(info.fraction * 1000))
        self.bar.setFormat("Cancelling…" if job.cancel.is_set() else progress_text(info))
        self.detail.setText(detail_text(info))

    def _on_queue_job_removed(self, job: Job) -> None:
        if self._queue.running is None:
            self.cancel_button.setEnabled(False)
            self.bar.setValue(0)
            self.bar.setFormat({"done": "Done", "cancelled": "Cancelled", "failed": "Failed"}.get(job.status.value, "Idle"))
            self.detail.setText("")

"""Downloading a model by Hugging Face repo id: the state behind the download dialog."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.api import Cancelled, EaselError

log = logging.getLogger(__name__)


class DownloadState(QObject):
    """One download at a time. ``state``: "idle" | "checking" | "downloading" | "verifying" | "done" |
    "cancelled" | "failed"; ``message`` says it in a line for the dialog."""

    state_changed = Signal(str, str)  # state, message
    progress_changed = Signal(int, int)  # bytes done, bytes total
    finished = Signal(str)  # the snapshot folder

    def __init__(self, bridge: Any, reporter: Any, parent: QObject | None = None):
        super().__init__(parent)
        self._bridge = bridge
        self._reporter = reporter
        self.state = "idle"
        self.message = ""
        self._cancel: threading.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self.state in ("checking", "downloading", "verifying")

    def _set(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        self.state_changed.emit(state, message)

    def start(self, repo_id: str) -> asyncio.Task[None] | None:
        """Start downloading ``repo_id`` into the shared hub cache (GUI thread)."""
        if self.busy:
            return None
        from engine.download import Download

        try:
            job = Download(repo_id.strip())
        except EaselError as exc:
            self._set("failed", str(exc))
            return None
        self._cancel = threading.Event()
        self._set("checking", f"Asking the hub about {job.repo_id}…")
        self._task = asyncio.get_running_loop().create_task(self._run(job, self._cancel))
        return self._task

    def cancel(self) -> None:
        if self._cancel is not None and self.busy:
            self._cancel.set()

    async def _run(self, job: Any, cancel: threading.Event) -> None:
        try:
            path = await self._bridge.download(job, self._on_bridge_event, cancel)
        except Cancelled:
            self._set("cancelled", "Cancelled. What was fetched is kept: downloading again resumes from there.")
            return
        except EaselError as exc:
            self._set("failed", f"The download failed: {exc}")
            return
        except Exception as exc:  # an Easel bug: say so, log the traceback
            self._reporter.report(f"The download failed unexpectedly: {exc}", exc)
            self._set("failed", f"The download failed unexpectedly: {exc}")
            return
        self._set("done", f"Downloaded to {path}")
        self.finished.emit(str(path))

    def _on_bridge_event(self, event: Any) -> None:
        if event.kind == "plan":
            fetch = f"{event.need / 1e9:.2f} GB" if event.need >= 1e8 else f"{event.need / 1e6:.1f} MB"
            self._set("downloading", f"Downloading {len(event.files)} file(s), {fetch} to fetch…")
            self.progress_changed.emit(event.total - event.need, event.total)
        elif event.kind == "progress":
            if self.state != "downloading" or not self.message.endswith(f"{event.file}…"):
                self._set("downloading", f"Downloading {event.file}…")
            self.progress_changed.emit(event.done, event.total)
        elif event.kind == "verifying":
            self._set("verifying", f"Checking {event.file} against its published SHA-256…")

    def stop(self) -> None:
        """On shutdown: cancel a running download (its partial file stays for next time)."""
        self.cancel()

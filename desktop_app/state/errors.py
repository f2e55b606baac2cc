"""Errors and notices the window shows, and the in-memory log excerpt behind "details"."""

from __future__ import annotations

import collections
import logging
import traceback
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

log = logging.getLogger("easel")

_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


class RecentLogHandler(logging.Handler):
    """Keeps the last few hundred formatted log lines (any thread) for the banner's details."""

    def __init__(self, capacity: int = 300):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(_FORMAT))
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)

    def excerpt(self, n: int = 40) -> str:
        return "\n".join(list(self.lines)[-n:])


@dataclass(frozen=True)
class ErrorReport:
    message: str  # one plain-language line
    details: str  # the log excerpt (traceback included) shown under "details"


class ErrorReporter(QObject):
    """Turns failures into banner reports and log records. Never raises."""

    error_reported = Signal(object)  # ErrorReport
    notice_posted = Signal(str)
    notice_withdrawn = Signal(str)  # a notice that no longer holds (the trash was undone)

    def __init__(self, recent: RecentLogHandler | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.recent = recent or RecentLogHandler()
        self.reports: list[ErrorReport] = []

    def report(self, message: str, exc: BaseException | None = None) -> ErrorReport:
        from engine.api import EaselError

        if exc is not None and not isinstance(exc, EaselError):  # a user-level error needs no traceback
            log.error("%s", message, exc_info=(type(exc), exc, exc.__traceback__))
        else:
            log.error("%s", message)
        details = self.recent.excerpt()
        if exc is not None and not isinstance(exc, EaselError) and self.recent not in logging.getLogger().handlers:
            details += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        report = ErrorReport(message, details)
        self.reports.append(report)
        self.error_reported.emit(report)
        return report

    def notice(self, message: str) -> None:
        log.warning("%s", message)
        self.notice_posted.emit(message)

    def withdraw(self, message: str) -> None:
        """The notice ``message`` is out of date: hide it if it is still what the banner shows."""
        self.notice_withdrawn.emit(message)

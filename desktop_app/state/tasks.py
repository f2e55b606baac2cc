"""Coroutines started from slots: kept referenced until they finish; a failure becomes a banner.

A task nobody references can be garbage-collected mid-run, and an exception in one must never
escape into the event loop unseen. GUI thread only.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine

from desktop_app.state.errors import ErrorReporter
from engine.api import EaselError


class BackgroundTasks:
    def __init__(self, reporter: ErrorReporter, context: str):
        self._reporter = reporter
        self._context = context  # e.g. "The gallery hit a problem"
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def __len__(self) -> int:  # tasks still running (0 when idle)
        return len(self._tasks)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        message = str(exc) if isinstance(exc, EaselError) else f"{self._context}: {exc}"
        self._reporter.report(message[:1].upper() + message[1:], exc)

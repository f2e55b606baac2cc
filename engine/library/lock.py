"""One Easel instance owns a library at a time: an OS file lock on ``<library>/.easel/lock``.

The lock is ``flock`` (POSIX) or ``msvcrt.locking`` (Windows) on an open file: the operating
system drops it when the process ends, however it ends, so a crash never leaves a stale lock.
The file holds the owner's process id, so a second instance can say who holds it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.api import EaselError


class LibraryLocked(EaselError):
    """Another process owns the library; ``pid`` is its process id when known."""

    def __init__(self, folder: Path, pid: int | None):
        who = f" (process {pid})" if pid else ""
        super().__init__(
            f"another Easel{who} is already using the library in {folder}; close it first, "
            "or start with --data-dir to use a different folder"
        )
        self.folder = folder
        self.pid = pid


class LibraryLock:
    """An exclusive, non-blocking lock on one library folder. Any thread; not re-entrant."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise LibraryLocked at once (never waits)."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LibraryLocked(self.path.parent.parent, pid) from None
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is only for the message
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> LibraryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    def _read_pid(fd: int) -> int | None:  # noqa: F811 - the locked byte cannot be read on Windows
        return None

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

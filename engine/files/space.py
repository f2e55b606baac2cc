"""The disk-full rule, and what a write failure means to the user: one place decides.

A full disk shows up three ways: ``OSError`` with ENOSPC or EDQUOT from a file write; sqlite's
"database or disk is full" (SQLITE_FULL); and sqlite's "disk I/O error" (SQLITE_IOERR), which a
full disk also produces when the WAL or shared-memory file cannot grow. That last one is also what
real damage looks like, so it counts as "full" only when the folder has (almost) no free space left.
A full disk is never damage: the index is left where it is, and the user is told "the disk is full".
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from engine.api import EaselError

LOW_SPACE_BYTES = 1_000_000  # below this a write failure on the folder is taken for a full disk
SAVE_RESERVE_BYTES = 1_000_000  # free space a save needs when the caller cannot say
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SQLITE_FULL, _SQLITE_IOERR = 13, 10


class DiskFull(EaselError):
    """A write failed because the disk (or the user's quota) is full."""


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Free space on the filesystem holding ``folder`` (its nearest existing parent), or None."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def is_disk_full(error: BaseException, folder: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``error`` (an OSError or sqlite3 error) means the disk is full, not damage.

    ``folder`` is where the write went; sqlite's ambiguous "disk I/O error" counts as full only when
    that folder's filesystem has under ``LOW_SPACE_BYTES`` free. Any thread.
    """
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return True
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        text = str(error).lower()
        if primary == _SQLITE_FULL or "database or disk is full" in text:
            return True
        if (primary == _SQLITE_IOERR or "disk i/o error" in text) and folder is not None:
            free = free_bytes(folder)
            return free is not None and free < LOW_SPACE_BYTES
    return False


def describe_os_error(error: BaseException, folder: str | os.PathLike[str] | None = None) -> str | None:
    """One plain line for a failure the user's disk or files caused, or None when it is not one.

    A full disk, a read-only or forbidden folder, a file where a folder should be (or the reverse),
    a symlink loop. Used by the CLI's reporter and by every save path. Any thread.
    """
    from engine.files.safe import printable

    if is_disk_full(error, folder or getattr(error, "filename", None)):
        where = getattr(error, "filename", None) or folder
        return f"the disk is full{f' (writing {printable(str(where))})' if where else ''}: free some space and try again"
    if isinstance(error, sqlite3.Error):
        return None
    if not isinstance(error, OSError) or error.errno is None:
        return None
    name = error.filename or folder
    where = f"{printable(str(name))}: " if name else ""
    messages = {
        errno.EROFS: "the disk is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a folder, not a file",
        errno.ENOTDIR: "a file is in the way where a folder should be",
        errno.EEXIST: "a file of that name is in the way",
        errno.ELOOP: "a symbolic link that loops",
        errno.ENAMETOOLONG: "the name is too long",
        errno.ENOENT: "no such file or folder",
    }
    problem = messages.get(error.errno)
    return f"{where}{problem}" if problem else None


def check_writable_folder(folder: str | os.PathLike[str], *, need_bytes: int = SAVE_RESERVE_BYTES) -> None:
    """Before a long job: make ``folder`` if needed and prove a file can be written there, with room
    for the result. Raises ``EaselError`` (``DiskFull`` for no space) with one line. Any thread.
    """
    from engine.files.safe import printable

    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
        fd, probe = tempfile.mkstemp(prefix=".easel-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        line = describe_os_error(exc, path) or f"{printable(str(path))}: cannot be written ({exc.strerror or exc})"
        raise (DiskFull if is_disk_full(exc, path) else EaselError)(
            f"cannot save into {printable(str(path))}: {line}") from None
    free = free_bytes(path)
    if free is not None and free < need_bytes:
        raise DiskFull(f"the disk is full: {printable(str(path))} has {free // 1000} KB free, "
                       f"and saving needs about {-(-need_bytes // 1000)} KB; free some space and try again")

"""Reading a file Easel did not write: only regular files, never more than a bound that follows
from the file's size and what it is meant to be.

Every reader of a config, JSON file, image or PNG chunk stream goes through here, because the
failures are the same everywhere: a FIFO or device named ``config.json`` blocks ``open()`` forever,
``/dev/zero`` named like a config never ends, a symlink loop raises ELOOP, a 2 GB "JSON" file is read
whole into memory. Each is refused with one plain line (``UnreadableFile``, an ``EaselError``).

The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a FIFO
cannot block the open and a file swapped for a FIFO after a ``stat`` is still caught.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, BinaryIO

from engine.api import EaselError

MAX_JSON_BYTES = 10_000_000  # the largest real config (a tokenizer.json) is a few MB
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class UnreadableFile(EaselError, OSError):
    """A file that is not a regular file, cannot be opened, or is far larger than its kind allows.

    Also an ``OSError``, so the many readers that already treat "cannot be read" as an OSError
    (skip the file, fall back) keep doing so when they switch to this module."""

    def __init__(self, path: str | os.PathLike[str], problem: str):
        super().__init__(f"{printable(str(path))}: {problem}")
        self.path = str(path)
        self.problem = problem


def printable(text: str) -> str:
    """``text`` safe to echo on one terminal line: control characters (newlines, ANSI escapes) escaped.

    A file or repo name may hold ``\\n`` or ``\\x1b[...`` on purpose; printed raw it would forge a
    second message line or recolour the terminal. Any thread.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _describe(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _open_error(path: str | os.PathLike[str], error: OSError) -> UnreadableFile:
    import errno

    if error.errno == errno.ELOOP:
        return UnreadableFile(path, "a symbolic link that loops (it points back at itself)")
    if error.errno == errno.ENOENT:
        return UnreadableFile(path, "no such file")
    if error.errno in (errno.EACCES, errno.EPERM):
        return UnreadableFile(path, "permission denied")
    if error.errno == errno.EISDIR:
        return UnreadableFile(path, "a folder, not a file")
    return UnreadableFile(path, f"cannot be read ({error.strerror or error})")


def regular_size(path: str | os.PathLike[str]) -> int:
    """The size of ``path`` when it is a regular file (symlinks followed); ``UnreadableFile`` otherwise.

    Never opens the file, so it cannot block. Any thread.
    """
    try:
        st = os.stat(path)
    except OSError as error:
        raise _open_error(path, error) from None
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFile(path, f"{_describe(st.st_mode)}, not a file Easel can read")
    return st.st_size


def is_regular(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (or a link to one); False for FIFOs, devices, loops, folders."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def open_regular(path: str | os.PathLike[str], max_bytes: int | None = None) -> BinaryIO:
    """``path`` opened for binary reading, after checking on the open descriptor that it is a regular
    file (and at most ``max_bytes`` long when given). The caller closes it. Any thread.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | _BINARY)
    except OSError as error:
        raise _open_error(path, error) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile(path, f"{_describe(st.st_mode)}, not a file Easel can read")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnreadableFile(path, f"implausibly large for what it should be ({_human(st.st_size)}; "
                                       f"at most {_human(max_bytes)} expected)")
        if _NONBLOCK:
            os.set_blocking(fd, True)  # a regular file: plain blocking reads from here
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The whole of a regular file of at most ``max_bytes`` (refused past it, never read past it)."""
    with open_regular(path, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we read: still refused
        raise UnreadableFile(path, f"implausibly large for what it should be (over {_human(max_bytes)})")
    return data


def read_text(path: str | os.PathLike[str], max_bytes: int = MAX_JSON_BYTES) -> str:
    """A regular UTF-8 text file of at most ``max_bytes``; ``UnreadableFile`` otherwise. Any thread."""
    try:
        return read_bytes(path, max_bytes).decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(path, "not UTF-8 text: the file is damaged") from None


def read_json(path: str | os.PathLike[str], max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file parsed, refusing non-regular files and files over ``max_bytes`` before reading.

    Invalid JSON (including nesting deep enough to exhaust the parser) raises ``UnreadableFile``.
    Any thread.
    """
    text = read_text(path, max_bytes)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise UnreadableFile(path, f"not valid JSON{where}: the file is damaged") from None


def remaining(f: BinaryIO) -> int:
    """Bytes left between ``f``'s position and its end: the bound for any length field read from it."""
    here = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(here)
    return end - here


def _human(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"


__all__ = ["MAX_JSON_BYTES", "UnreadableFile", "is_regular", "open_regular", "printable", "read_bytes",
           "read_json", "read_text", "regular_size", "remaining"]


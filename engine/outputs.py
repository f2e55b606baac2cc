"""Saving results: PNG files with metadata, written atomically (never a half-written file)."""

from __future__ import annotations

import os
import re
import tempfile
import time
import unicodedata
from pathlib import Path

from engine import __version__
from engine.api import EaselError, Result
from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")

TEMP_PREFIX, TEMP_SUFFIX = ".easel-", ".png.part"  # temp files: never a final name
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def safe_stem(text: str, limit: int = 48) -> str:
    """A file-name fragment from user text: no path separators, no traversal, no reserved names."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[^\w\- ]+", "", text, flags=re.UNICODE).strip().replace(" ", "_")
    text = re.sub(r"_+", "_", text)[:limit].strip("._-")
    if not text or text.lower() in _WINDOWS_RESERVED:
        text = "image"
    return text


def write_png_atomic(path: Path, image: Image.Image, pnginfo=None, *, overwrite: bool = True) -> Path:
    """Write ``image`` to ``path`` through a temp file in the same folder, fsync, rename, fsync dir.

    A crash or an error (a full disk) at any moment leaves either the old state or the whole new
    file under ``path``, never part of one; the temp file is removed on error. With
    ``overwrite=False`` an existing file (another process saving at the same moment) is never
    replaced: the image goes to ``name-2.png``, ``name-3.png``... Returns the path written.
    """
    return _write_atomic(Path(path), lambda fh: image.save(fh, format="PNG", pnginfo=pnginfo), overwrite)


def write_bytes_atomic(path: Path, data: bytes, *, overwrite: bool = True) -> Path:
    """``write_png_atomic`` for bytes already encoded (a copied file, edited text chunks)."""
    return _write_atomic(Path(path), lambda fh: fh.write(data), overwrite)


def write_text_atomic(path: Path, text: str) -> Path:
    """A small text file (settings, caches) replaced whole or not at all: readers never see half."""
    return _write_atomic(Path(path), lambda fh: fh.write(text.encode("utf-8")), True, suffix=".part")


def _write_atomic(path: Path, write, overwrite: bool, suffix: str = TEMP_SUFFIX) -> Path:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; the user's other tools must read their images
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            path = _link_unique(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_folder(folder)
    return path


_UMASK: int | None = None


def _umask() -> int:
    """The process umask, read once (``os.umask`` can only be read by setting it, so not per write)."""
    global _UMASK
    if _UMASK is None:
        try:  # Linux: readable without changing it, so safe with other threads running
            with open("/proc/self/status", encoding="ascii") as f:
                _UMASK = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
        except (OSError, StopIteration, ValueError, IndexError):
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


def _link_unique(tmp: str, path: Path) -> Path:
    """Give the finished temp file the first free name from ``path`` on, atomically (no overwrite)."""
    for n in range(1, 100_000):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            os.link(tmp, candidate)  # fails if the name exists: no window for another writer
        except FileExistsError:
            continue
        except OSError:  # no hard links here (FAT, some network shares): check, then rename
            if candidate.exists():
                continue
            os.replace(tmp, candidate)
            return candidate
        os.unlink(tmp)
        return candidate
    raise EaselError(f"too many files named like {path.name} in {path.parent}")


def fsync_folder(folder: Path) -> None:
    """Make a rename or delete in ``folder`` durable (a no-op where folders cannot be opened)."""
    if hasattr(os, "O_DIRECTORY"):
        dfd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def result_filename(result: Result, index: int) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{result.seeds[index]}-{safe_stem(result.request.prompt)}.png"


def save_result(result: Result, folder: Path, *, embed_metadata: bool = True) -> list[Path]:
    """Save every image of ``result`` into ``folder`` with A1111 + Easel metadata; returns the paths."""
    from engine.metadata import png_info

    folder = Path(folder)
    paths = []
    for index, image in enumerate(result.images):
        target = folder / result_filename(result, index)
        info = png_info(result, index, app_version=__version__, embed=embed_metadata)
        try:
            paths.append(write_png_atomic(target, image, info, overwrite=False))
        except OSError as exc:
            raise EaselError(f"could not save {target.name} in {folder}: {exc.strerror or exc}") from exc
    return paths


def save_image(result: Result, index: int, target: Path, *, embed_metadata: bool = True) -> Path:
    """Save one image of ``result`` to exactly ``target``."""
    from engine.metadata import png_info

    info = png_info(result, index, app_version=__version__, embed=embed_metadata)
    try:
        return write_png_atomic(Path(target), result.images[index], info)
    except OSError as exc:
        raise EaselError(f"could not save {target}: {exc.strerror or exc}") from exc

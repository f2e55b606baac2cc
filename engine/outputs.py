"""Saving results: PNG files with metadata, written atomically (never a half-written file)."""

from __future__ import annotations

import os
import re
import tempfile
import time
import unicodedata
from pathlib import Path

from PIL import Image

from engine import __version__
from engine.api import EaselError, Result

_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def safe_stem(text: str, limit: int = 48) -> str:
    """A file-name fragment from user text: no path separators, no traversal, no reserved names."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[^\w\- ]+", "", text, flags=re.UNICODE).strip().replace(" ", "_")
    text = re.sub(r"_+", "_", text)[:limit].strip("._-")
    if not text or text.lower() in _WINDOWS_RESERVED:
        text = "image"
    return text


def write_png_atomic(path: Path, image: Image.Image, pnginfo=None) -> Path:
    """Write ``image`` to ``path`` through a temp file in the same folder, fsync, rename, fsync dir."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".easel-", suffix=".png.part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG", pnginfo=pnginfo)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):
        dfd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def result_filename(result: Result, index: int) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{result.seeds[index]}-{safe_stem(result.request.prompt)}.png"


def save_result(result: Result, folder: Path, *, embed_metadata: bool = True) -> list[Path]:
    """Save every image of ``result`` into ``folder`` with A1111 + Easel metadata; returns the paths."""
    from engine.metadata import png_info

    folder = Path(folder)
    paths = []
    for index, image in enumerate(result.images):
        target = _unique(folder / result_filename(result, index))
        info = png_info(result, index, app_version=__version__, embed=embed_metadata)
        try:
            paths.append(write_png_atomic(target, image, info))
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


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    for n in range(2, 10_000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise EaselError(f"too many files named like {path.name} in {path.parent}")

"""Thumbnails on disk: one small JPEG per image version, made on first need off the GUI thread.

The cache key is the image's relative path, size and modification time, so an edited or replaced
file gets a new thumbnail, and the cache survives an index rebuild. The reconciler prunes thumbnails
whose image is gone, so the cache does not outgrow the library. Files are written atomically
(temp + rename) so a crash never leaves a broken thumbnail under its final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from engine.api import EaselError, ImageError
from engine.files.safe import read_bytes
from engine.images import GALLERY_FORMATS, MAX_IMAGE_FILE_BYTES, open_header, sniff_format
from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")
ImageOps = LazyModule("PIL.ImageOps")

THUMB_SIZE = 256  # the longest side, in pixels


class ThumbnailCache:
    def __init__(self, folder: Path, size: int = THUMB_SIZE):
        self.folder = Path(folder)
        self.size = size

    def path_for(self, relative: str, size_bytes: int, mtime_ns: int) -> Path:
        key = self._key(relative, size_bytes, mtime_ns)
        return self.folder / key[:2] / f"{key}.jpg"

    def _key(self, relative: str, size_bytes: int, mtime_ns: int) -> str:
        return hashlib.sha1(f"{relative}\0{size_bytes}\0{mtime_ns}\0{self.size}".encode()).hexdigest()

    def prune_due(self, every: float = 7 * 86400.0) -> bool:
        """True when the last prune is older than ``every`` seconds (or there was none)."""
        try:
            return time.time() - (self.folder / ".pruned").stat().st_mtime >= every
        except OSError:
            return self.folder.is_dir()

    def prune(self, keep: Iterable[tuple[str, int, int]], stale_after: float = 3600.0) -> int:
        """Delete thumbnails of images no longer in the library (``keep``: every indexed image's
        relative path, size and mtime_ns) and leftover temp files older than ``stale_after`` s.
        Returns how many files went. A thumbnail deleted by mistake is only made again. Runs on
        the library's worker thread."""
        wanted = {f"{self._key(*k)}.jpg" for k in keep}
        removed = 0
        now = time.time()
        try:
            folders = [f for f in os.scandir(self.folder) if f.is_dir(follow_symlinks=False)]
        except OSError:
            return 0
        for folder in folders:
            try:
                files = list(os.scandir(folder.path))
            except OSError:
                continue
            for f in files:
                try:
                    if f.name.endswith(".jpg"):
                        if f.name in wanted:
                            continue
                    elif not (f.name.startswith(".thumb-") and now - f.stat().st_mtime >= stale_after):
                        continue
                    os.unlink(f.path)
                    removed += 1
                except OSError:
                    pass
        try:
            (self.folder / ".pruned").touch()
        except OSError:
            pass
        return removed

    def get(self, source: Path, relative: str, size_bytes: int, mtime_ns: int) -> Path | None:
        """The thumbnail file for ``source``, made now if missing; None if the image cannot be read.

        Runs on a worker thread (decoding a large image takes tens of milliseconds).
        """
        target = self.path_for(relative, size_bytes, mtime_ns)
        if target.is_file():
            return target
        try:
            with _open(source) as image:
                image.draft("RGB", (self.size, self.size))  # JPEG: decode at a reduced scale
                image = ImageOps.exif_transpose(image)
                image.thumbnail((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=2.0)
                thumb = _flatten(image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EaselError):
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                thumb.save(fh, format="JPEG", quality=85)
            os.replace(tmp, target)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return None  # a full disk must not break browsing: the caller shows the image itself
        return target


def _open(source: Path) -> Image.Image:
    try:
        return open_header(source, "image", GALLERY_FORMATS)
    except ImageError:
        # Pillow refuses a PNG whose text inflates past MAX_TEXT_CHUNK ("Decompressed Data Too
        # Large"), pixels and all: open it again without its text chunks.
        from engine.library.pngtext import png_without_text

        data = read_bytes(source, MAX_IMAGE_FILE_BYTES)
        if sniff_format(data[:16]) != "PNG":
            raise
        return open_header(png_without_text(data), "image", ("PNG",))


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (128, 128, 128))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")

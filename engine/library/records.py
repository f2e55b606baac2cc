"""One gallery entry, and how to make one from an image file alone (the index is rebuildable).

The file is the source of truth: every field of ``LibraryEntry`` except ``id`` comes from the file's
name, size, modification time, header and embedded metadata. Favourites live in the file too (a
PNG text chunk, see ``pngtext``), so rebuilding the index from the files keeps them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.api import EaselError
from engine.files.png import PNG_SIGNATURE, walk_chunks
from engine.files.safe import open_regular
from engine.images import GALLERY_FORMATS, MAX_IMAGE_FILE_BYTES, check_size, open_header
from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")

if TYPE_CHECKING:
    from engine.metadata import ImageMetadata

# The metadata readers (A1111, ComfyUI, InvokeAI, EXIF...) are first needed when an image is indexed,
# on the I/O thread: not on the desktop app's start-up path.
metadata = LazyModule("engine.metadata")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
FAVOURITE_KEY = "easel-favourite"  # PNG tEXt chunk: "1" when the user starred the image


@dataclass(frozen=True)
class LibraryEntry:
    """What the gallery shows for one image. ``path`` is relative to the library folder (``/``)."""

    id: int
    path: str
    size_bytes: int
    mtime_ns: int
    created: float  # seconds since the epoch: when it was made (metadata) or else the file time
    width: int
    height: int
    prompt: str = ""
    negative_prompt: str = ""
    model_name: str = ""
    model_hash: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    sampler: str = ""
    mode: str = ""
    source: str = "none"  # which tool's metadata: easel, a1111, comfyui, invokeai, fooocus, nmkd, none
    favourite: bool = False
    trashed_at: float | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def with_id(self, new_id: int) -> LibraryEntry:
        return replace(self, id=new_id)


def is_library_image(relative: str) -> bool:
    """A file name the library indexes: an image suffix, no hidden part (temp files, .easel, .trash)."""
    parts = relative.split("/")
    return relative.lower().endswith(IMAGE_SUFFIXES) and not any(p.startswith(".") for p in parts)


def entry_from_file(root: Path, path: Path, *, trashed_at: float | None = None) -> LibraryEntry | None:
    """Read one file into an entry (id 0). None when it is not a complete, readable image.

    Reads the header, the text chunks and, for PNG, walks the chunk headers to IEND (a cut-off file
    is not complete); pixels are not decoded. Any thread.
    """
    try:
        stat = path.stat()
        with open_regular(path, MAX_IMAGE_FILE_BYTES) as fp:
            if fp.read(8) == PNG_SIGNATURE:
                # The size from IHDR, not through Pillow: Pillow refuses a PNG with a huge text chunk.
                # Walking every chunk to IEND also tells a cut-off file (not complete) from a whole one.
                fp.seek(0)
                chunks = walk_chunks(fp)
                ctype, offset, length = next(chunks)
                fp.seek(offset)
                width, height = struct.unpack(">II", fp.read(8))
                if ctype != b"IHDR" or length < 8 or not width or not height:
                    return None
                check_size((width, height))
                for _chunk in chunks:
                    pass
            else:
                fp.seek(0)
                with open_header(fp, "image", GALLERY_FORMATS) as image:
                    width, height = image.size
            fp.seek(0)
            meta = metadata.read_metadata(fp)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, struct.error, EaselError):
        return None
    relative = path.relative_to(root).as_posix()
    return entry_from_metadata(meta, relative, stat.st_size, stat.st_mtime_ns, width, height, trashed_at=trashed_at)


def entry_from_metadata(
    meta: ImageMetadata, relative: str, size_bytes: int, mtime_ns: int, width: int, height: int,
    *, trashed_at: float | None = None,
) -> LibraryEntry:
    f: dict[str, Any] = meta.fields
    return LibraryEntry(
        id=0,
        path=relative,
        size_bytes=size_bytes,
        mtime_ns=mtime_ns,
        created=_created(meta) or mtime_ns / 1e9,
        width=width,
        height=height,
        prompt=f.get("prompt", ""),
        negative_prompt=f.get("negative_prompt", ""),
        model_name=meta.model_name,
        model_hash=meta.model_hash,
        seed=f.get("seed"),
        steps=f.get("steps"),
        guidance_scale=f.get("guidance_scale"),
        sampler=f.get("sampler", ""),
        mode=f.get("mode", ""),
        source=meta.source,
        favourite=meta.raw.get(FAVOURITE_KEY, "").strip() == "1",
        trashed_at=trashed_at,
    )


def _created(meta: ImageMetadata) -> float | None:
    text = meta.extra.get("Created", "")
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None



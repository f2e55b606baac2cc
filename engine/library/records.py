"""One gallery entry, and how to make one from an image file alone (the index is rebuildable).

The file is the source of truth: every field of ``LibraryEntry`` except ``id`` comes from the file's
name, size, modification time, header and embedded metadata. Favourites live in the file too (a
PNG text chunk, see ``pngtext``), so rebuilding the index from the files keeps them.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from engine.metadata import ImageMetadata, read_metadata

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
FAVOURITE_KEY = "easel-favourite"  # PNG tEXt chunk: "1" when the user starred the image
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        with open(path, "rb") as fp:
            if fp.read(8) == _PNG_SIGNATURE:
                # The size from IHDR, not through Pillow: Pillow refuses a PNG with a huge text chunk.
                length, ctype, width, height = struct.unpack(">I4sII", fp.read(16))
                if ctype != b"IHDR" or not width or not height or not _png_complete(fp):
                    return None
            else:
                fp.seek(0)
                with Image.open(fp) as image:
                    width, height = image.size
            fp.seek(0)
            meta = read_metadata(fp)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, struct.error):
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


def _png_complete(fp) -> bool:
    """Walk chunk headers from just after the signature to IEND; False when the file is cut off."""
    end = os.fstat(fp.fileno()).st_size
    pos = 8
    while pos + 12 <= end:
        fp.seek(pos)
        length, ctype = struct.unpack(">I4s", fp.read(8))
        pos += 12 + length
        if ctype == b"IEND":
            return pos <= end
    return False

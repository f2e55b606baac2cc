"""Edit one text chunk of a PNG file in place, without re-encoding its pixels.

Used for state the library keeps in the files themselves (favourites), so that rebuilding the
index from the files gives the same gallery. The file is rewritten atomically (temp, fsync, rename).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from engine.api import EaselError
from engine.files.png import PNG_SIGNATURE as _PNG_SIGNATURE
from engine.files.png import DamagedPng, read_chunks
from engine.files.safe import read_bytes
from engine.images import MAX_IMAGE_FILE_BYTES
from engine.outputs import write_bytes_atomic



def set_png_text(path: Path, key: str, value: str | None) -> None:
    """Set tEXt ``key`` to ``value`` (Latin-1), or remove it when ``value`` is None. Any thread.

    Raises EaselError when the file is not a complete PNG or cannot be written.
    """
    path = Path(path)
    data = read_bytes(path, MAX_IMAGE_FILE_BYTES)
    chunks = _chunks(data, path.name)
    kept = [c for c in chunks if not (c[0] == b"tEXt" and c[1].split(b"\0", 1)[0] == key.encode("latin-1"))]
    if value is not None:
        kept.insert(len(kept) - 1, (b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")))
    out = bytearray(_PNG_SIGNATURE)
    for ctype, body in kept:
        out += struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    try:
        write_bytes_atomic(path, bytes(out))
    except OSError as exc:
        raise EaselError(f"could not update {path.name}: {exc.strerror or exc}") from None


def _chunks(data: bytes, name: str) -> list[tuple[bytes, bytes]]:
    try:
        return read_chunks(data)
    except DamagedPng as exc:
        raise EaselError(f"{name}: {exc}") from None


def png_without_text(data: bytes) -> bytes:
    """The PNG with its text chunks left out, for decoding pixels with Pillow: Pillow refuses files
    whose compressed text inflates past ``PngImagePlugin.MAX_TEXT_CHUNK``, pixels and all."""
    out = bytearray(_PNG_SIGNATURE)
    for ctype, body in _chunks(data, "image"):
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            out += struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    return bytes(out)

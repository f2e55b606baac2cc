"""Walking a PNG's chunks without decoding it: the one walker every PNG reader uses.

A chunk is ``length (4) | type (4) | body (length) | CRC (4)``. A hostile or damaged file can make
a naive walker spin: a sparse 6 GB file reads as zero-length chunks of type ``\\0\\0\\0\\0``, half a
billion of them. So each chunk's type must be four ASCII letters (the PNG rule), its length must fit
in what is left of the file, and the number of chunks is bounded by the file's size (each chunk takes
at least 12 bytes) and by ``MAX_CHUNKS``, which no real image comes near.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from engine.files.safe import remaining

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 1_000_000  # a 100 MP image in 8 KB IDAT chunks is ~50,000


class DamagedPng(ValueError):
    """The chunk stream is cut off or not a PNG's: one plain reason in ``str()``."""


def _valid_type(ctype: bytes) -> bool:
    return all(65 <= b <= 90 or 97 <= b <= 122 for b in ctype)


def walk_chunks(fp: BinaryIO) -> Iterator[tuple[bytes, int, int]]:
    """(type, body offset, body length) for each chunk of the PNG read from ``fp``, up to and
    including IEND. ``fp`` must be seekable and positioned at the signature. The body is not read:
    the caller seeks to the offset and reads what it wants (``fp`` is left there between chunks).

    Raises ``DamagedPng`` when the signature is wrong, a chunk is malformed or runs past the end of
    the file, or the file ends before IEND. Any thread.
    """
    if fp.read(8) != PNG_SIGNATURE:
        raise DamagedPng("not a PNG file")
    pos = fp.tell()
    end = pos + remaining(fp)
    for _ in range(min(MAX_CHUNKS, (end - pos) // 12 + 1)):
        fp.seek(pos)
        header = fp.read(8)
        if len(header) < 8:
            raise DamagedPng("the PNG file ends early (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", header)
        if not _valid_type(ctype):
            raise DamagedPng("the PNG file is damaged (a chunk has no valid type)")
        if pos + 12 + length > end:
            raise DamagedPng("the PNG file ends early (it is truncated)")
        yield ctype, pos + 8, length
        if ctype == b"IEND":
            return
        pos += 12 + length
    raise DamagedPng("the PNG file ends early (no IEND chunk)" if pos + 12 > end
                     else "the PNG file is damaged (too many chunks)")


def read_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every (type, body) of a PNG held in memory, through ``walk_chunks``; ``DamagedPng`` otherwise."""
    import io

    return [(ctype, data[offset:offset + length]) for ctype, offset, length in walk_chunks(io.BytesIO(data))]

"""Safetensors headers and file sniffing: what a file's first bytes say, and nothing more.

``sniff`` names a file's format from its first 32 bytes; ``read_header`` reads a safetensors file's
8 + N header bytes and validates them fully (dtypes, shapes, offsets inside the file, no overlaps, no
gaps), and refuses pickles and torch zips with ``UnsafeModelFile`` without ever unpickling anything.
Stdlib and ``engine.api`` only (the GUI side imports this through ``engine.files.probe``). Any thread;
reads at most a few MB.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass

from engine.api import ModelError, UnsafeModelFile, UnsupportedModel

MAX_HEADER_BYTES = 100_000_000  # the safetensors reference implementation's limit

# Bits per element; sub-byte float formats pack several elements per byte.
_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}

PICKLE_PROBLEM = (
    "pickle-based checkpoint: Easel never opens these because loading them can run code; "
    "use a .safetensors version of this model"
)
EMPTY_PROBLEM = "empty file (0 bytes): the download or copy did not finish"
LFS_PROBLEM = "this is a git-LFS pointer, not the model itself: fetch the real file (git lfs pull)"
GGUF_PROBLEM = ("Easel reads GGUF files only as FLUX.1, FLUX.2 [klein], Z-Image, Qwen-Image and SD 3.5 transformers, "
                "and this one is none of them: use a .safetensors version of this model")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header; offsets are relative to the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated safetensors header: every tensor's bytes lie inside the file, none overlap."""

    path: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_offset: int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: info.shape for name, info in self.tensors.items()}


def sniff(path: str | os.PathLike[str]) -> str:
    """The file's format from its first bytes (never its extension).

    One of "safetensors", "pickle", "torch-zip", "lfs-pointer", "empty", "gguf", "unknown".
    A folder, a missing path or anything that is not a regular file is "unknown".
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return "unknown"
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return "unknown"
    return _sniff_head(head, st.st_size)


def _sniff_head(head: bytes, size: int) -> str:
    if size == 0 or not head:
        return "empty"
    if head.startswith(b"version https://git-lfs"):
        return "lfs-pointer"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head.startswith(b"GGUF"):
        return "gguf"
    looks_st = len(head) >= 9 and head[8:9] == b"{"
    looks_pickle = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    if looks_st and looks_pickle:
        # A header length whose low byte is 0x80 and next byte 2..5 reads like a pickle opcode;
        # a real pickle's first 8 bytes read as a length far beyond the file.
        return "safetensors" if struct.unpack("<Q", head[:8])[0] <= size - 8 else "pickle"
    if looks_st:
        return "safetensors"
    if looks_pickle:
        return "pickle"
    return "unknown"


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Read and fully validate a safetensors header, reading only its first 8 + N bytes.

    Raises ModelError (UnsafeModelFile for pickles and torch zips, UnsupportedModel for GGUF)
    whose ``problem`` is one plain-language line.
    """
    spath = os.fspath(path)
    try:
        st = os.stat(spath)
        if stat.S_ISDIR(st.st_mode):
            raise ModelError(spath, "is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(spath, "is not a regular file")
        size = st.st_size
        with open(spath, "rb") as f:
            head = f.read(32)
            kind = _sniff_head(head, size)
            if kind == "unknown" and _damaged_header_start(head, size):
                kind = "safetensors"  # parse it, so the message says what is wrong with the header
            if kind != "safetensors":
                _raise_not_safetensors(spath, kind, head, size)
            (n,) = struct.unpack("<Q", head[:8])
            if n > MAX_HEADER_BYTES:
                raise ModelError(spath, f"header length {n:,} bytes is implausible (over 100 MB): "
                                 "the file is damaged or not a safetensors file")
            if 8 + n > size:
                raise ModelError(spath, f"the header length ({_human(n)}) runs past the end of the file "
                                 f"({_human(size)}): the file is truncated or not a safetensors file")
            f.seek(8)
            raw = f.read(n)
    except FileNotFoundError:
        raise ModelError(spath, "not found") from None
    except OSError as e:
        raise ModelError(spath, f"cannot be read: {e.strerror or e}") from None
    if len(raw) != n:  # the file shrank while we read it
        raise ModelError(spath, "truncated while reading its header")
    return _parse_header(spath, raw, size)


def _damaged_header_start(head: bytes, size: int) -> bool:
    """A plausible header length followed by JSON that is not an object: worth a precise message."""
    if len(head) < 9 or head[8:9] not in (b"[", b" ", b"\t", b"\r", b"\n"):
        return False
    return 10 <= 8 + struct.unpack("<Q", head[:8])[0] <= size


def _raise_not_safetensors(spath: str, kind: str, head: bytes, size: int) -> None:
    if kind == "empty":
        raise ModelError(spath, EMPTY_PROBLEM)
    if kind == "lfs-pointer":
        raise ModelError(spath, LFS_PROBLEM)
    if kind == "pickle":
        raise UnsafeModelFile(spath, PICKLE_PROBLEM)
    if kind == "torch-zip":
        if _zip_without_pickle(spath):
            raise ModelError(spath, "this is a zip archive, not a model file: unpack it first")
        raise UnsafeModelFile(spath, PICKLE_PROBLEM)
    if kind == "gguf":
        raise UnsupportedModel(spath, GGUF_PROBLEM)
    if head.lstrip()[:1] == b"<" and b"html" in head.lower():
        raise ModelError(spath, "this is a web page (HTML), not a model: the download saved an error or login page")
    if size < 9:
        raise ModelError(spath, f"only {_human(size)}: too small to be a model; the download or copy did not finish")
    raise ModelError(spath, "not a safetensors file or a diffusers folder: Easel cannot read this format")


def _zip_without_pickle(spath: str) -> bool:
    """True only when the zip's directory lists no pickle at all (then it is a plain archive)."""
    import zipfile  # lazy: rarely needed

    try:
        with zipfile.ZipFile(spath) as z:  # reads the central directory only
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False  # a damaged torch zip is still a torch zip: stay on the safe side
    return not any(name.endswith(".pkl") or "/data/" in name for name in names)


def _parse_header(spath: str, raw: bytes, size: int) -> SafetensorsHeader:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(spath, "the header is not UTF-8 text: the file is damaged or not a safetensors file") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        where = f" ({e.msg} at character {e.pos})" if isinstance(e, json.JSONDecodeError) else ""
        raise ModelError(spath, f"the header is not valid JSON{where}: the file is damaged or not a safetensors file") from None
    if not isinstance(obj, dict):
        raise ModelError(spath, "the header is not a JSON object: the file is damaged or not a safetensors file")

    metadata = obj.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelError(spath, "the header's __metadata__ is not a map of text to text: the file is damaged")

    tensors: dict[str, TensorInfo] = {}
    for name, entry in obj.items():
        tensors[name] = _tensor_info(spath, name, entry)

    data_offset = 8 + len(raw)
    _check_layout(spath, tensors, size - data_offset, size, data_offset)
    return SafetensorsHeader(spath, tensors, dict(metadata), data_offset)


def _tensor_info(spath: str, name: str, entry: object) -> TensorInfo:
    q = quote(name)
    if not isinstance(entry, dict):
        raise ModelError(spath, f"tensor {q} has a malformed header entry: the file is damaged")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise ModelError(spath, f"tensor {q} has no {key} in the header: the file is damaged")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPE_BITS:
        raise ModelError(spath, f"tensor {q} has an unknown dtype {quote(str(dtype))}: the file is damaged or too new")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise ModelError(spath, f"tensor {q} has a malformed shape in the header: the file is damaged")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise ModelError(spath, f"tensor {q} has malformed data_offsets in the header: the file is damaged")
    numel = 1
    for d in shape:
        numel *= d
    bits = numel * _DTYPE_BITS[dtype]
    need = bits // 8
    have = offsets[1] - offsets[0]
    if bits % 8 or need != have:
        raise ModelError(spath, f"tensor {q} is {dtype} {list(shape)} ({need:,} bytes) but its data_offsets span "
                         f"{have:,} bytes: the header is damaged")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def _check_layout(spath: str, tensors: dict[str, TensorInfo], data_len: int, size: int, data_offset: int) -> None:
    ordered = sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end))
    pos, prev, gap = 0, None, None
    for name, info in ordered:
        if info.start < pos:
            raise ModelError(spath, f"tensors {quote(prev)} and {quote(name)} overlap in the file: the header is damaged")
        if info.start > pos and gap is None:
            gap = (name, info.start - pos)
        pos, prev = info.end, name
    if pos > data_len:
        if gap is None:
            a, b = _human_pair(size, data_offset + pos)
            raise ModelError(spath, f"truncated: the file is {a} but its header describes {b}; the download did not finish")
        name, info = next((n, i) for n, i in ordered if i.end > data_len)
        raise ModelError(spath, f"tensor {quote(name)} has data_offsets {info.start:,}-{info.end:,}, past the end of "
                         f"the file (its data section holds {data_len:,} bytes): the file is damaged")
    if gap is not None:
        raise ModelError(spath, f"{gap[1]:,} bytes before tensor {quote(gap[0])} belong to no tensor "
                         "(a gap in the header's data_offsets): the file is damaged")
    if pos < data_len:
        raise ModelError(spath, f"{data_len - pos:,} bytes after the last tensor are not described by the header: "
                         "the file is damaged or was written by a broken tool")


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def quote(text: str | None) -> str:
    """A name from a file, quoted for a one-line message: control and line-break characters escaped."""
    text = "" if text is None else text
    if len(text) > 80:
        text = text[:77] + "..."
    return json.dumps(text)  # ensure_ascii escapes \n, \u2028 and every other line break


def _human(n: int) -> str:
    """Decimal units, one decimal place: 1,932,735,283 -> "1.9 GB"."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return "1 byte" if n == 1 else f"{n} bytes"


def _human_pair(a: int, b: int) -> tuple[str, str]:
    ha, hb = _human(a), _human(b)
    if ha == hb:  # a file one byte short must not read "2.1 GB but ... 2.1 GB"
        return f"{ha} ({a:,} bytes)", f"{hb} ({b:,} bytes)"
    return ha, hb


# --------------------------------------------------------------------------------------------
# GGUF (llama.cpp's format; city96's FLUX transformer files)
# --------------------------------------------------------------------------------------------

# ggml tensor types -> (name, elements per block, bytes per block)
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    30: ("BF16", 1, 2),
}
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_MAX_STRING = 1 << 20
_GGUF_MAX_ITEMS = 1 << 24


def read_gguf_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """A GGUF file's tensor table as a SafetensorsHeader (names, logical shapes in PyTorch order, ggml
    type names as dtypes, byte ranges in its data section) and its string metadata; every tensor is
    checked to lie inside the file. Reads the header only. Raises ModelError with one plain line."""
    spath = os.fspath(path)
    try:
        size = os.stat(spath).st_size
        with open(spath, "rb") as f:
            return _parse_gguf(spath, f, size)
    except FileNotFoundError:
        raise ModelError(spath, "not found") from None
    except (struct.error, EOFError):
        raise ModelError(spath, "the GGUF header is truncated: the download or copy did not finish") from None
    except OSError as e:
        raise ModelError(spath, f"cannot be read: {e.strerror or e}") from None


def _parse_gguf(spath: str, f, size: int) -> SafetensorsHeader:
    def read(fmt: str):
        raw = f.read(struct.calcsize(fmt))
        if len(raw) != struct.calcsize(fmt):
            raise EOFError
        return struct.unpack(fmt, raw)[0]

    def string() -> str:
        n = read("<Q")
        if n > _GGUF_MAX_STRING:
            raise ModelError(spath, "the GGUF header holds an implausibly long string: the file is damaged")
        raw = f.read(n)
        if len(raw) != n:
            raise EOFError
        return raw.decode("utf-8", "replace")

    def value(kind: int):
        if kind in _GGUF_SCALARS:
            return read(_GGUF_SCALARS[kind])
        if kind == 8:
            return string()
        if kind == 9:
            inner, count = read("<I"), read("<Q")
            if count > _GGUF_MAX_ITEMS:
                raise ModelError(spath, "the GGUF header holds an implausibly long array: the file is damaged")
            if inner in _GGUF_SCALARS:  # skipped, not kept: tokenizer tables can be large
                f.seek(count * struct.calcsize(_GGUF_SCALARS[inner]), os.SEEK_CUR)
                return None
            for _ in range(count):
                value(inner)
            return None
        raise ModelError(spath, f"the GGUF header has an unknown value type {kind}: the file is damaged or too new")

    if f.read(4) != b"GGUF":
        raise ModelError(spath, "not a GGUF file")
    version = read("<I")
    if version not in (2, 3):
        raise UnsupportedModel(spath, f"GGUF version {version} is not supported (only 2 and 3)")
    n_tensors, n_kv = read("<Q"), read("<Q")
    if n_tensors > _GGUF_MAX_ITEMS or n_kv > _GGUF_MAX_ITEMS:
        raise ModelError(spath, "the GGUF header's counts are implausible: the file is damaged")
    metadata: dict[str, str] = {}
    alignment = 32
    for _ in range(n_kv):
        key, kind = string(), read("<I")
        got = value(kind)
        if key == "general.alignment" and isinstance(got, int) and got > 0:
            alignment = got
        if isinstance(got, (str, int, float)) and not isinstance(got, bool):
            metadata[key] = str(got)
    entries = []
    for _ in range(n_tensors):
        name, n_dims = string(), read("<I")
        if n_dims > 8:
            raise ModelError(spath, f"tensor {quote(name)} has {n_dims} dimensions: the GGUF file is damaged")
        dims = [read("<Q") for _ in range(n_dims)]
        kind, offset = read("<I"), read("<Q")
        if kind not in GGML_TYPES:
            raise UnsupportedModel(spath, f"tensor {quote(name)} uses ggml type {kind}, which Easel cannot read")
        entries.append((name, tuple(reversed(dims)), kind, offset))
    data_offset = -(-f.tell() // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, shape, kind, offset in entries:
        type_name, block, block_bytes = GGML_TYPES[kind]
        numel = 1
        for d in shape:
            numel *= d
        if numel % block:
            raise ModelError(spath, f"tensor {quote(name)} does not fill whole {type_name} blocks: the GGUF file is damaged")
        end = offset + numel // block * block_bytes
        if data_offset + end > size:
            raise ModelError(spath, f"truncated: tensor {quote(name)} runs past the end of the file; the download did "
                             "not finish")
        tensors[name] = TensorInfo(type_name, shape, offset, end)
    return SafetensorsHeader(spath, tensors, metadata, data_offset)

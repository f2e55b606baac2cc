"""Getting the texts out of a file (PNG text chunks, EXIF UserComment, JPEG comment) and
``read_metadata``, which hands them to each format's parser in turn.

PNG text chunks are read by a small chunk reader of our own rather than through Pillow: Pillow
refuses to open a file whose compressed text chunk inflates past ``PngImagePlugin.MAX_TEXT_CHUNK``
(1 MiB), and reading only chunk headers skips decoding the pixels. Chunks above ``MAX_CHUNK_BYTES``
are skipped with a warning.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from engine.files.png import PNG_SIGNATURE as _PNG_SIGNATURE
from engine.files.png import DamagedPng, walk_chunks
from engine.files.safe import open_regular
from engine.metadata.a1111 import STEPS_PAIR, parse_a1111
from engine.metadata.comfyui import parse_comfyui, parse_comfyui_workflow
from engine.metadata.easel import parse_easel
from engine.metadata.fields import EASEL_KEY, PARAMETERS_KEY, ImageMetadata, json_object
from engine.metadata.fooocus import parse_fooocus_json
from engine.metadata.invokeai import parse_dream, parse_invokeai, parse_sd_metadata

MAX_CHUNK_BYTES = 32 * 1024 * 1024  # one text chunk, raw or inflated; larger ones are skipped
MAX_TEXT_BYTES = 128 * 1024 * 1024  # all text chunks of one file together

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
_MAKER_NOTE = 0x927C
_SOFTWARE = 0x0131


# ============================================================================================
# Getting the texts out of a file
# ============================================================================================


def _read_png_texts(fp: BinaryIO, warnings: list[str]) -> tuple[dict[str, str], bytes | None]:
    """Text chunks (tEXt, zTXt, iTXt) and the eXIf chunk of a PNG, without decoding pixels."""
    texts: dict[str, str] = {}
    exif: bytes | None = None
    total = 0
    try:
        for ctype, offset, length in walk_chunks(fp):
            if ctype not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
                continue
            if length > MAX_CHUNK_BYTES or total + length > MAX_TEXT_BYTES:
                warnings.append(f"a {ctype.decode()} chunk of {length / 2**20:.1f} MB is too large to read; skipped")
                continue
            fp.seek(offset)
            data = fp.read(length)  # the walker checked that the body lies inside the file; CRC not checked
            total += length
            if ctype == b"eXIf":
                exif = data
                continue
            try:
                key, value = _decode_text_chunk(ctype, data)
            except ValueError as error:
                warnings.append(f"a {ctype.decode()} chunk could not be read ({error}); skipped")
                continue
            total += len(value)
            texts.setdefault(key, value)
    except DamagedPng as error:
        warnings.append(str(error))
    return texts, exif


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CHUNK_BYTES)
    except zlib.error as error:
        raise ValueError(f"bad compressed data: {error}") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"inflates to more than {MAX_CHUNK_BYTES // 2**20} MB")
    return out


def _decode_text_chunk(ctype: bytes, data: bytes) -> tuple[str, str]:
    key_bytes, sep, rest = data.partition(b"\0")
    if not sep:
        raise ValueError("no keyword")
    key = key_bytes.decode("latin-1")
    if ctype == b"tEXt":
        return key, rest.decode("latin-1")
    if ctype == b"zTXt":
        return key, _inflate(rest[1:]).decode("latin-1")
    if len(rest) < 2:
        raise ValueError("short iTXt chunk")
    compressed, body = rest[0], rest[2:]
    _lang, _, body = body.partition(b"\0")
    _translated, _, body = body.partition(b"\0")
    if compressed:
        body = _inflate(body)
    return key, body.decode("utf-8", errors="replace")


def decode_user_comment(value: Any) -> str:
    """EXIF UserComment as text: an 8-byte charset code ("UNICODE\\0" UTF-16 either endian, "ASCII")."""
    if isinstance(value, str):
        return value.rstrip("\0")
    if not isinstance(value, (bytes, bytearray)):
        return ""
    data = bytes(value)
    code, body = data[:8], data[8:]
    if code == b"UNICODE\0":
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            text = body.decode("utf-16", errors="replace")
        else:
            even = body[0::2].count(0)
            odd = body[1::2].count(0)
            text = body.decode("utf-16-be" if even >= odd else "utf-16-le", errors="replace")
    elif code in (b"ASCII\0\0\0", b"\0" * 8) or code.startswith(b"JIS"):
        text = _utf8_or_latin1(body)
    else:
        text = _utf8_or_latin1(data)
    return text.rstrip("\0")


def _utf8_or_latin1(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _exif_texts(exif: Image.Exif, texts: dict[str, str]) -> None:
    try:
        comment = exif.get(USER_COMMENT)
        if comment is None:
            comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
        if comment is not None:
            text = decode_user_comment(comment)
            if text.strip():
                texts.setdefault("UserComment", text)
        for tag, name in ((_MAKER_NOTE, "MakerNote"), (_SOFTWARE, "Software")):
            value = exif.get(tag)
            if isinstance(value, bytes):
                value = _utf8_or_latin1(value).rstrip("\0")
            if isinstance(value, str) and value and len(value) < 4096:
                texts.setdefault(name, value)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not stop reading
        pass


def _texts_from_image(image: Image.Image, warnings: list[str]) -> dict[str, str]:
    texts: dict[str, str] = {}
    info = dict(getattr(image, "info", {}) or {})
    try:
        more = getattr(image, "text", None)  # PNG chunks after IDAT (loads the image)
        if isinstance(more, dict):
            info.update({k: v for k, v in more.items() if k not in info})
    except Exception as error:  # noqa: BLE001
        warnings.append(f"some text chunks could not be read ({error})")
    for key, value in info.items():
        if isinstance(value, str):
            texts[str(key)] = str(value)
        elif key == "comment" and isinstance(value, (bytes, bytearray)):
            texts["comment"] = _utf8_or_latin1(bytes(value))
    try:
        _exif_texts(image.getexif(), texts)
    except Exception:  # noqa: BLE001
        pass
    return texts


def _texts_from_file(fp: BinaryIO, warnings: list[str]) -> dict[str, str]:
    start = fp.tell()
    head = fp.read(8)
    fp.seek(start)
    if head == _PNG_SIGNATURE:
        texts, exif_bytes = _read_png_texts(fp, warnings)
        if exif_bytes:
            exif = Image.Exif()
            try:
                exif.load(exif_bytes)
                _exif_texts(exif, texts)
            except Exception:  # noqa: BLE001
                warnings.append("the PNG's EXIF block could not be read")
        return texts
    from engine.images import GALLERY_FORMATS, open_header

    with open_header(fp, "image", GALLERY_FORMATS) as image:
        return _texts_from_image(image, warnings)


# ============================================================================================
# Reading: the entry point
# ============================================================================================


def read_metadata(source: str | Path | Image.Image | BinaryIO) -> ImageMetadata:
    """How an image was made, from whichever tool wrote it; never raises.

    ``source``: a path, an open binary file, or a PIL image. Our ``easel`` chunk is read first
    (exact); then A1111/Fooocus ``parameters``, ComfyUI, InvokeAI, NMKD, EXIF UserComment.
    ``source == "none"`` when nothing was found or the file could not be read (see warnings).
    Runs on any thread; reading a path touches only the file's header and text chunks.
    """
    warnings: list[str] = []
    try:
        if isinstance(source, Image.Image):
            texts = _texts_from_image(source, warnings)
        elif isinstance(source, (str, Path)):
            with open_regular(source) as fp:  # never a FIFO or device: they would block or never end
                texts = _texts_from_file(fp, warnings)
        else:
            texts = _texts_from_file(source, warnings)
    except Exception as error:  # noqa: BLE001 - unreadable files are a "none" result, not a crash
        warnings.append(f"the image could not be read ({type(error).__name__}: {error})")
        return ImageMetadata("none", warnings=tuple(warnings))
    try:
        return _interpret(texts, warnings)
    except Exception as error:  # noqa: BLE001 - a parser bug must not take the gallery down
        warnings.append(f"the metadata could not be interpreted ({type(error).__name__}: {error})")
        return ImageMetadata("none", raw=texts, warnings=tuple(warnings))


def _interpret(texts: dict[str, str], warnings: list[str]) -> ImageMetadata:
    if EASEL_KEY in texts:
        found = parse_easel(texts[EASEL_KEY], texts)
        if found is not None:
            return _with_warnings(found, warnings)
        warnings.append("the Easel metadata is damaged; reading the other metadata instead")

    parameters = texts.get(PARAMETERS_KEY)
    scheme = texts.get("fooocus_scheme")
    if parameters is None and "UserComment" in texts:
        parameters = texts["UserComment"]
        scheme = scheme or texts.get("MakerNote")
    if parameters is not None and parameters.strip():
        stripped = parameters.strip()
        json_like = stripped.startswith("{") and stripped.endswith("}")
        if scheme == "fooocus" or json_like:
            local: list[str] = []
            data = json_object(stripped, "parameters", local)
            if data is not None:
                return _with_warnings(parse_fooocus_json(data, texts, local), warnings)
            if scheme == "fooocus":
                warnings.extend(local)
        if scheme != "fooocus":
            source = "fooocus" if scheme == "a1111" or "fooocus" in texts.get("Software", "").lower() else "a1111"
            return _with_warnings(parse_a1111(parameters, raw=texts, source=source), warnings)

    if texts.get("prompt", "").lstrip().startswith("{"):
        found = parse_comfyui(texts["prompt"], texts, warnings)
        if found is not None:
            return found
    elif texts.get("workflow", "").lstrip().startswith("{"):  # the editor graph alone
        found = parse_comfyui_workflow(texts["workflow"], texts, warnings)
        if found is not None:
            return found
    if "invokeai_metadata" in texts:
        found = parse_invokeai(texts["invokeai_metadata"], texts, warnings)
        if found is not None:
            return found
    nmkd = any("nmkd" in (k + " " + v[:2000]).lower() for k, v in texts.items()
               if k not in ("Dream", "sd-metadata")) or "nmkd" in texts.get("sd-metadata", "")[:4000].lower()
    legacy_source = "nmkd" if nmkd else "invokeai"
    if "sd-metadata" in texts:
        found = parse_sd_metadata(texts["sd-metadata"], texts, legacy_source, warnings)
        if found is not None:
            return found
    if "Dream" in texts and texts["Dream"].strip():
        return parse_dream(texts["Dream"], texts, legacy_source, warnings)
    comment = texts.get("comment", "")
    if STEPS_PAIR.search(comment):
        return _with_warnings(parse_a1111(comment, raw=texts), warnings)
    return ImageMetadata("none", raw=texts, warnings=tuple(warnings))


def _with_warnings(found: ImageMetadata, earlier: list[str]) -> ImageMetadata:
    if not earlier:
        return found
    return dataclasses.replace(found, warnings=tuple(earlier) + found.warnings)

"""Opening images for every mode (CLI and app alike): one set of rules, one plain line on failure.

The rules:

- Every image Easel reads, from any place (init image, mask, upscale source, gallery import and
  listing, thumbnails, metadata), is opened through ``open_header``: the format is told from the
  file's first bytes (never its name) and only the formats below are handed to Pillow, each to its
  own plugin alone. Pillow knows dozens of formats, and some run programs (EPS runs Ghostscript) or
  raise errors nobody expects (DDS, FLI...): a file in any other format is "not an image Easel reads".
- The header is read first; an image whose header claims more than ``MAX_PIXELS`` pixels (or a side
  over ``MAX_SIDE``) is refused before any pixel is decoded (a decompression bomb is a few KB of file
  that would need gigabytes to decode).
- A truncated, damaged or non-image file gives "cannot read image".
- The EXIF orientation is applied, so photos stand upright as every viewer shows them.
- Everything comes out as 8-bit ``RGB``, or ``RGBA`` when some pixel is not fully opaque:
  16-bit and 32-bit greyscale are scaled (not clipped) to 8 bits, greyscale and bilevel become RGB,
  palette images keep their transparency, CMYK and images with a non-sRGB ICC profile are converted
  to sRGB through the profile (LittleCMS), and without a profile by Pillow's formula.
- ``split_alpha`` turns transparency into a mask (transparent = regenerate), as inpainting tools do.
"""

from __future__ import annotations

import base64
import contextlib
import io
import struct
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

from engine.api import ImageError
from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")
ImageOps = LazyModule("PIL.ImageOps")

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path

# What the README promises. The gallery shows and imports PNG, JPEG and WebP; an init image or mask
# may also be TIFF, BMP or GIF. Magic bytes -> Pillow's format name.
GALLERY_FORMATS = ("PNG", "JPEG", "WEBP")
INPUT_FORMATS = (*GALLERY_FORMATS, "TIFF", "BMP", "GIF")
MAX_IMAGE_FILE_BYTES = 2 * 1024**3  # a 100 MP 16-bit RGBA PNG stored raw is 800 MB; past this it is not a photo
MAX_PIXELS = 100_000_000  # 100 megapixels: bigger than any camera most people own
MAX_SIDE = 30_000
MASK_KEY = "easel-mask"  # PNG text chunk: the inpaint mask as base64 PNG, so an edit can be redone


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
_DECODE_ERRORS = (OSError,  # OSError includes Pillow's UnidentifiedImageError
                  SyntaxError, ValueError, EOFError, IndexError, KeyError,
                  TypeError, ZeroDivisionError, OverflowError, MemoryError, struct.error)


def sniff_format(head: bytes) -> str | None:
    """Pillow's format name for a file starting with ``head`` (16 bytes are enough), or None when
    it is none of ``INPUT_FORMATS``."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def open_header(source: str | Path | bytes | BinaryIO, what: str = "image",
                formats: tuple[str, ...] = INPUT_FORMATS) -> Image.Image:
    """The one gate every image open goes through: ``source`` (a path, bytes or a binary file)
    opened lazily (header read, no pixel decoded) when its first bytes say it is one of
    ``formats``, and its header's size is within the limits.

    The caller closes the image (``with open_header(...) as im``). Raises ``ImageError`` with one
    plain line otherwise; a path is checked to be a regular file first (a FIFO cannot block).
    Any thread (pure Pillow).
    """
    from engine.files.safe import UnreadableFile, open_regular, printable

    name = printable(Path(source).name) if isinstance(source, (str, Path)) else what
    if isinstance(source, (str, Path)):
        try:
            fp: BinaryIO = open_regular(source, MAX_IMAGE_FILE_BYTES)
        except UnreadableFile as exc:
            raise ImageError(f"{what} {exc}") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(source))
    else:
        fp = source
    try:
        start = fp.tell()
        kind = sniff_format(fp.read(16))
        fp.seek(start)
        if kind is None or kind not in formats:
            allowed = ", ".join("WebP" if f == "WEBP" else f for f in formats)
            raise ImageError(f"{what} {name}: cannot read image (not a format Easel reads; it reads {allowed})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings (bombs, odd chunks) are handled here
            im = Image.open(fp, formats=[kind])  # that one plugin alone; reads the header only
        try:
            check_size(im.size, what, name)
        except ImageError:
            im.close()
            raise
        if isinstance(source, (str, Path)):
            im._exclusive_fp = True  # type: ignore[attr-defined]  # closing the image closes our file
        return im
    except Image.DecompressionBombError:
        _close_own(fp, source)
        raise ImageError(f"{what} {name}: refused, its header claims an image too large to open safely") from None
    except ImageError:
        _close_own(fp, source)
        raise
    except _DECODE_ERRORS:
        _close_own(fp, source)
        raise ImageError(f"{what} {name}: cannot read image (not an image, or the file is damaged)") from None


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _c_stderr_to_log(active: bool):
    """While decoding, send what C libraries write straight to file descriptor 2 to the log instead.

    libtiff reports a damaged strip by printing its own line ("tempfile.tif: Using code not yet in
    table."), past Python and past the CLI's one-line rule; Pillow gives no hook for it. The
    descriptor is swapped only around the decode of such a file, under a lock. Any thread.
    """
    if not active:
        yield
        return
    import logging
    import os
    import sys
    import tempfile

    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said = sink.read(4096).decode("utf-8", "replace").strip()
            if said:
                logging.getLogger(__name__).info("the image decoder said: %s", said)


def _close_own(fp: BinaryIO, source: object) -> None:
    if isinstance(source, (str, Path)):
        fp.close()


def open_image(source: str | Path | bytes | BinaryIO, what: str = "image",
               formats: tuple[str, ...] = INPUT_FORMATS) -> Image.Image:
    """Open ``source`` (a path, bytes or a binary file) fully decoded as 8-bit RGB or RGBA, upright.

    Raises ``ImageError`` with one plain line: no such file, not an image format Easel reads,
    refused (too large, before decoding), or cannot read image. Any thread (pure Pillow/numpy).
    """
    name = Path(source).name if isinstance(source, (str, Path)) else what
    im = open_header(source, what, formats)
    try:
        with im, warnings.catch_warnings(), _c_stderr_to_log(im.format == "TIFF"):
            warnings.simplefilter("ignore")
            im.load()
            return normalize(im, what)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{what} {name}: refused, its header claims an image too large to open safely") from None
    except _DECODE_ERRORS:
        raise ImageError(f"{what} {name}: cannot read image (not an image, or the file is damaged)") from None


def check_size(size: tuple[int, int], what: str = "image", name: str = "") -> None:
    """Refuse sizes over the limits with one line (before decoding, when given a header's size)."""
    w, h = size
    if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
        label = f"{what} {name}".strip()
        raise ImageError(
            f"{label}: refused, its header claims {w}x{h} pixels ({w * h / 1e6:.0f} megapixels); "
            f"the limit is {MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE} pixels a side"
        )


def normalize(im: Image.Image, what: str = "image") -> Image.Image:
    """Any decoded Pillow image as 8-bit RGB, or RGBA when it has transparency; upright."""
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        im = _scaled_to_8bit(im)
        mode = "L"
    if im.info.get("icc_profile") and mode in ("RGB", "RGBA", "CMYK", "L"):
        im = _to_srgb(im) or im
        mode = im.mode
    if mode == "RGBA" or mode in ("LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info) \
            or (mode in ("L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return rgba if rgba.getextrema()[3][0] < 255 else rgba.convert("RGB")
    if mode == "RGB":
        return im.copy() if im.readonly else im
    try:
        return im.convert("RGB")
    except ValueError:
        raise ImageError(f"{what}: cannot read image (its colour mode {mode} is not supported)") from None


def split_alpha(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> tuple[Image.Image, Image.Image | None]:
    """(RGB image composited over ``background``, mask) where mask = 255 - alpha (transparent =
    regenerate), or None when the image is opaque."""
    if image.mode != "RGBA":
        return (image if image.mode == "RGB" else image.convert("RGB")), None
    alpha = image.getchannel("A")
    base = Image.new("RGBA", image.size, (*background, 255))
    rgb = Image.alpha_composite(base, image).convert("RGB")
    mask = alpha.point(lambda a: 255 - a)
    return rgb, (mask if mask.getbbox() else None)


def _scaled_to_8bit(im: Image.Image) -> Image.Image:
    a = np.asarray(im)
    if im.mode == "F":
        a = np.nan_to_num(a.astype(np.float64))
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        out = np.clip(np.rint(a * scale), 0, 255)
    else:
        out = np.rint(np.clip(a.astype(np.int64), 0, 65535) / 257.0)  # "I" is read as 16-bit data
    return Image.fromarray(out.astype(np.uint8), "L")


def _to_srgb(im: Image.Image) -> Image.Image | None:
    """Convert through the embedded ICC profile to sRGB; None when the profile is sRGB or unusable."""
    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        desc = (ImageCms.getProfileDescription(profile) or "").lower()
        if "srgb" in desc and im.mode != "CMYK":
            return None
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        if im.mode == "L" and profile.profile.xcolor_space.strip() != "GRAY":
            return None
        converted = ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"), outputMode=out_mode)
        return converted
    except Exception:  # a broken or unusual profile: Pillow's plain conversion is the fallback
        return None


def mask_to_text(mask: Image.Image) -> str:
    """The mask as base64 PNG text, for the ``easel-mask`` chunk."""
    buf = io.BytesIO()
    mask.convert("L").save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def mask_from_png(path: str | Path) -> Image.Image | None:
    """The mask stored in a PNG's ``easel-mask`` chunk (an Easel inpaint result), or None."""
    try:
        with open_header(path, "image", ("PNG",)) as im:
            text = getattr(im, "text", {}).get(MASK_KEY)
            if not text:
                return None
            size = im.size
        mask = open_image(base64.b64decode(text), "stored mask").convert("L")
        return mask if mask.size == size else None
    except (OSError, ValueError, ImageError):  # OSError includes UnidentifiedImageError
        return None

"""Opening images for every mode (CLI and app alike): one set of rules, one plain line on failure.

The rules:

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
import io
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.api import ImageError
from engine.lazy import LazyModule

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path

MAX_PIXELS = 100_000_000  # 100 megapixels: bigger than any camera most people own
MAX_SIDE = 30_000
MASK_KEY = "easel-mask"  # PNG text chunk: the inpaint mask as base64 PNG, so an edit can be redone


def open_image(source: str | Path | bytes | BinaryIO, what: str = "image") -> Image.Image:
    """Open ``source`` (a path, bytes or a binary file) fully decoded as 8-bit RGB or RGBA, upright.

    Raises ``ImageError`` with one plain line: no such file, refused (too large, before decoding),
    or cannot read image. Any thread (pure Pillow/numpy).
    """
    name = Path(source).name if isinstance(source, (str, Path)) else what
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise ImageError(f"{what} {p}: no such file")
        fp: BinaryIO | str | Path = p
    elif isinstance(source, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(source))
    else:
        fp = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)  # reads the header only
        with im:
            check_size(im.size, what, name)
            im.load()
            return normalize(im, what)
    except Image.DecompressionBombError:
        raise ImageError(f"{what} {name}: refused, its header claims an image too large to open safely") from None
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError):
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
        with Image.open(path) as im:
            text = getattr(im, "text", {}).get(MASK_KEY)
            if not text:
                return None
            size = im.size
        mask = open_image(base64.b64decode(text), "stored mask").convert("L")
        return mask if mask.size == size else None
    except (OSError, ValueError, ImageError, UnidentifiedImageError):
        return None

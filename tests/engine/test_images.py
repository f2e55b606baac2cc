"""Opening images: every mode shown right, photos upright, bombs and broken files refused plainly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import ImageError
from engine.images import MAX_PIXELS, mask_from_png, mask_to_text, open_image, split_alpha


def saved(image: Image.Image, path: Path, **kw) -> Path:
    image.save(path, **kw)
    return path


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def test_rgb_round_trips_bit_exact(tmp_path):
    src = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    im = open_image(saved(src, tmp_path / "a.png"))
    assert im.mode == "RGB" and np.array_equal(np.asarray(im), np.asarray(src))


def test_rgba_keeps_alpha_and_transparency_becomes_the_mask(tmp_path):
    src = Image.new("RGBA", (40, 30), (10, 200, 30, 255))
    src.paste((0, 0, 0, 0), (20, 0, 40, 30))  # right half fully transparent
    im = open_image(saved(src, tmp_path / "a.png"))
    assert im.mode == "RGBA"
    image, mask = split_alpha(im)
    assert image.mode == "RGB" and image.getpixel((5, 5)) == (10, 200, 30)
    assert image.getpixel((30, 5)) == (255, 255, 255)  # transparent shows as the white background
    m = np.asarray(mask)
    assert (m[:, 20:] == 255).all() and (m[:, :20] == 0).all()


def test_opaque_rgba_is_plain_rgb_without_a_mask(tmp_path):
    im = open_image(saved(Image.new("RGBA", (8, 8), (1, 2, 3, 255)), tmp_path / "a.png"))
    assert im.mode == "RGB" and split_alpha(im)[1] is None


def test_palette_with_transparency(tmp_path):
    src = Image.new("P", (20, 10), 1)
    src.putpalette([0, 0, 0, 250, 20, 20] + [0] * 762)
    src.paste(0, (0, 0, 10, 10))
    im = open_image(saved(src, tmp_path / "p.png", transparency=0))
    image, mask = split_alpha(im)
    assert image.getpixel((15, 5)) == (250, 20, 20) and image.getpixel((5, 5)) == (255, 255, 255)
    assert mask.getpixel((5, 5)) == 255 and mask.getpixel((15, 5)) == 0


def test_palette_without_transparency_is_rgb(tmp_path):
    src = Image.new("P", (4, 4), 1)
    src.putpalette([0, 0, 0, 12, 34, 56] + [0] * 762)
    im = open_image(saved(src, tmp_path / "p.png"))
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (12, 34, 56)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path, fmt):
    ramp = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(16, 16)
    im = open_image(saved(Image.fromarray(ramp), tmp_path / f"g16.{fmt.lower()}", format=fmt))
    a = rgb(im)[..., 0]
    assert a.min() == 0 and a.max() == 255
    assert abs(a[8, 0] - 128) <= 1  # mid-grey stays mid-grey (a clip would make it 255)


def test_greyscale_and_bilevel_are_rgb(tmp_path):
    im = open_image(saved(Image.new("L", (5, 5), 77), tmp_path / "l.png"))
    assert im.mode == "RGB" and im.getpixel((1, 1)) == (77, 77, 77)
    im = open_image(saved(Image.new("1", (5, 5), 1), tmp_path / "b.png"))
    assert im.getpixel((1, 1)) == (255, 255, 255)
    im = open_image(saved(Image.new("LA", (5, 5), (77, 0)), tmp_path / "la.png"))
    assert im.mode == "RGBA" and split_alpha(im)[1].getpixel((0, 0)) == 255


def test_cmyk_shows_its_colours(tmp_path):
    src = Image.new("CMYK", (10, 10), (0, 255, 255, 0))  # pure red ink mix
    src.paste((255, 0, 0, 0), (5, 0, 10, 10))  # cyan
    im = open_image(saved(src, tmp_path / "c.tif", format="TIFF"))
    assert im.mode == "RGB"
    assert im.getpixel((1, 1)) == (255, 0, 0) and im.getpixel((8, 1)) == (0, 255, 255)
    jpg = open_image(saved(src, tmp_path / "c.jpg", quality=95))
    r, g, b = jpg.getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("orientation, expect_top_red", [(1, False), (3, False), (6, True), (8, False)])
def test_exif_orientation_is_applied(tmp_path, orientation, expect_top_red):
    src = Image.new("RGB", (40, 20), (0, 0, 255))
    src.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = open_image(saved(src, tmp_path / "o.jpg", exif=exif, quality=95))
    if orientation in (6, 8):
        assert im.size == (20, 40)
        top_red = im.getpixel((10, 5))[0] > 200
        assert top_red == expect_top_red  # 6: rotate 90 clockwise, the left edge goes to the top
    else:
        assert im.size == (40, 20)
        left_red = im.getpixel((5, 10))[0] > 200
        assert left_red == (orientation == 1)  # 3: rotated 180, red ends up on the right


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(12_000, 10_000), (60_000, 60_000), (40_000, 100)])
def test_bomb_refused_from_its_header_before_decoding(tmp_path, size):
    # The file holds no pixel data at all: decoding would fail as "cannot read"; refusing says "refused".
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(*size))
    with pytest.raises(ImageError) as err:
        open_image(path)
    message = str(err.value)
    assert "refused" in message and "bomb.png" in message and "\n" not in message
    assert size[0] * size[1] > MAX_PIXELS or max(size) > 30_000


def test_truncated_file_cannot_be_read(tmp_path):
    data = (tmp_path / "full.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(data)
    cut = tmp_path / "cut.png"
    cut.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(ImageError, match="cannot read image"):
        open_image(cut)
    jpg = tmp_path / "full.jpg"
    Image.open(data).save(jpg)
    (tmp_path / "cut.jpg").write_bytes(jpg.read_bytes()[:600])
    with pytest.raises(ImageError, match="cannot read image"):
        open_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n garbage"])
def test_non_image_cannot_be_read(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="cannot read image"):
        open_image(path)


def test_missing_file_and_bytes_source(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "nope.png")
    buf = io.BytesIO()
    Image.new("RGB", (3, 3), (9, 8, 7)).save(buf, "PNG")
    assert open_image(buf.getvalue()).getpixel((0, 0)) == (9, 8, 7)


def test_mask_chunk_round_trip(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    mask = Image.fromarray((np.arange(48 * 32).reshape(32, 48) % 256).astype(np.uint8), "L")
    info = PngInfo()
    info.add_text("easel-mask", mask_to_text(mask), zip=True)
    Image.new("RGB", (48, 32)).save(tmp_path / "r.png", pnginfo=info)
    assert np.array_equal(np.asarray(mask_from_png(tmp_path / "r.png")), np.asarray(mask))
    Image.new("RGB", (48, 32)).save(tmp_path / "plain.png")
    assert mask_from_png(tmp_path / "plain.png") is None

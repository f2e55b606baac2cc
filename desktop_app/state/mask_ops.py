"""Pixel operations on the canvas mask (numpy, no Qt): brush dabs, fills, grow/shrink, feather.

The mask is a (height, width) uint8 array: 0 = keep, 255 = regenerate, values between are a soft
edge. Rectangles are (left, top, right, bottom) with right/bottom exclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")

ImageDraw = LazyModule("PIL.ImageDraw")  # first used by a lasso or a feather, after start-up
ImageFilter = LazyModule("PIL.ImageFilter")

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path

Rect = tuple[int, int, int, int]


def union(a: Rect | None, b: Rect | None) -> Rect | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def clip(rect: Rect, width: int, height: int) -> Rect | None:
    l, t, r, b = max(0, rect[0]), max(0, rect[1]), min(width, rect[2]), min(height, rect[3])
    return (l, t, r, b) if l < r and t < b else None


def grown(rect: Rect, by: int) -> Rect:
    return rect[0] - by, rect[1] - by, rect[2] + by, rect[3] + by


def bbox(mask: np.ndarray) -> Rect | None:
    """The bounding box of the non-zero pixels, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@lru_cache(maxsize=64)
def _falloff(hardness_q: int) -> np.ndarray:
    """Coverage against distance / radius (0..1 in 256 steps) for a hardness in percent."""
    h = hardness_q / 100.0
    d = np.linspace(0.0, 1.0, 257, dtype=np.float32)
    inner = h  # fully covered up to this fraction of the radius, then a smooth ramp to the edge
    t = np.clip((d - inner) / max(1e-6, 1.0 - inner), 0.0, 1.0)
    return (1.0 - t * t * (3.0 - 2.0 * t)).astype(np.float32)


def dab(diameter: float, hardness: float, cx: float, cy: float) -> tuple[Rect, np.ndarray]:
    """A round dab centred at (cx, cy): its rect and coverage (float32 0..1) on that rect.

    The hard part of the edge is anti-aliased over one pixel so a hard brush is not jagged.
    """
    radius = max(0.5, diameter / 2.0)
    l, t = int(math.floor(cx - radius - 1)), int(math.floor(cy - radius - 1))
    r, b = int(math.ceil(cx + radius + 1)), int(math.ceil(cy + radius + 1))
    ys = np.arange(t, b, dtype=np.float32)[:, None] + 0.5 - cy
    xs = np.arange(l, r, dtype=np.float32)[None, :] + 0.5 - cx
    dist = np.sqrt(xs * xs + ys * ys)
    profile = _falloff(int(round(min(1.0, max(0.0, hardness)) * 100)))
    idx = np.minimum(dist / radius, 1.0) * 256.0
    cover = np.interp(idx.ravel(), np.arange(257, dtype=np.float32), profile).reshape(dist.shape)
    cover = np.minimum(cover, np.clip(radius + 0.5 - dist, 0.0, 1.0))  # one-pixel anti-aliased rim
    return (l, t, r, b), cover.astype(np.float32)


TILE = 64


@dataclass
class StrokeBuffer:
    """One stroke in progress: the mask as it was, and the stroke's own coverage (max of its dabs).

    Dabs within one stroke never build up beyond the opacity (a stroke is like one pass of a marker);
    the brush takes max(before, coverage), the eraser multiplies the before value by 1 - coverage.
    "Before" is copied lazily, 64x64 tile by tile, just ahead of the first dab that touches a tile,
    so starting a stroke costs nothing however big the canvas is.
    """

    before: np.ndarray
    coverage: np.ndarray
    copied: np.ndarray  # one flag per tile: its "before" pixels are saved
    erase: bool
    opacity: float
    dirty: Rect | None = None

    @classmethod
    def start(cls, mask: np.ndarray, erase: bool, opacity: float) -> StrokeBuffer:
        h, w = mask.shape[:2]
        tiles = (-(-h // TILE), -(-w // TILE))
        # np.empty / np.zeros only reserve memory: pages are touched as tiles are used.
        return cls(np.empty(mask.shape, np.uint8), np.zeros((h, w), np.uint8), np.zeros(tiles, bool), erase,
                   max(0.0, min(1.0, opacity)))

    def save_before(self, mask: np.ndarray, rect: Rect) -> None:
        """Copy the not-yet-saved tiles under ``rect`` from the (still unchanged) mask."""
        l, t, r, b = rect
        ty0, tx0, ty1, tx1 = t // TILE, l // TILE, -(-b // TILE), -(-r // TILE)
        flags = self.copied[ty0:ty1, tx0:tx1]
        if flags.all():
            return
        for ty, tx in np.argwhere(~flags):
            y, x = (ty0 + ty) * TILE, (tx0 + tx) * TILE
            self.before[y:y + TILE, x:x + TILE] = mask[y:y + TILE, x:x + TILE]
        flags[...] = True

    def changed_tiles(self, mask: np.ndarray) -> list[tuple[Rect, np.ndarray]]:
        """(rect, pixels as they were) for each saved tile the stroke changed: what undo needs."""
        h, w = mask.shape[:2]
        out = []
        for ty, tx in np.argwhere(self.copied):
            y, x = int(ty) * TILE, int(tx) * TILE
            rect = (x, y, min(w, x + TILE), min(h, y + TILE))
            before = self.before[y:rect[3], x:rect[2]]
            if not np.array_equal(before, mask[y:rect[3], x:rect[2]]):
                out.append((rect, before.copy()))
        return out

    def before_of(self, mask: np.ndarray, rect: Rect) -> np.ndarray:
        """The mask as it was inside ``rect`` (a copy)."""
        self.save_before(mask, rect)
        l, t, r, b = rect
        return self.before[t:b, l:r].copy()

    def apply_dab(self, mask: np.ndarray, rect: Rect, cover: np.ndarray) -> Rect | None:
        h, w = mask.shape[:2]
        c = clip(rect, w, h)
        if c is None:
            return None
        l, t, r, b = c
        self.save_before(mask, c)
        part = cover[t - rect[1]:b - rect[1], l - rect[0]:r - rect[0]]
        value = np.rint(part * (255.0 * self.opacity)).astype(np.uint8)
        cov = self.coverage[t:b, l:r]
        np.maximum(cov, value, out=cov)
        before = self.before[t:b, l:r]
        self._write(mask[t:b, l:r], before, cov)
        self.dirty = union(self.dirty, c)
        return c

    def _write(self, target: np.ndarray, before: np.ndarray, cov: np.ndarray) -> None:
        if self.erase:
            target[...] = np.rint(before.astype(np.float32) * (1.0 - cov / 255.0)).astype(np.uint8)
        else:
            np.maximum(before, cov, out=target)


@dataclass
class PaintStroke(StrokeBuffer):
    """A stroke on a pixel layer ((h, w, 4) premultiplied): the brush lays ``colour`` (the four bytes
    of an opaque premultiplied pixel) over the layer as it was at the stroke's coverage, the eraser
    takes the layer towards transparent. Same lazy "before" copy as the mask's strokes."""

    colour: np.ndarray | None = None

    def _write(self, target: np.ndarray, before: np.ndarray, cov: np.ndarray) -> None:
        paint(target, before, cov, self.colour, self.erase)


def paint(target: np.ndarray, before: np.ndarray, cov: np.ndarray, colour: np.ndarray | None, erase: bool) -> None:
    """``target`` = ``before`` (premultiplied pixels) with ``colour`` laid over at coverage ``cov``
    (uint8 0..255, or float 0..1), or erased towards transparent with ``erase``."""
    c = cov.astype(np.float32)[..., None]
    if cov.dtype == np.uint8:
        c *= 1.0 / 255.0
    src = before.astype(np.float32)
    if erase:
        target[...] = np.rint(src * (1.0 - c)).astype(np.uint8)
    else:
        target[...] = np.rint(src + (colour - src) * c).astype(np.uint8)


def dabs_along(x0: float, y0: float, x1: float, y1: float, spacing: float, carry: float) -> tuple[list[tuple[float, float]], float]:
    """Dab centres every ``spacing`` pixels from (x0, y0) towards (x1, y1); ``carry`` is the distance
    already travelled since the last dab. Returns the centres and the new carry."""
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy)
    points = []
    pos = spacing - carry
    while pos <= length:
        f = pos / length if length else 0.0
        points.append((x0 + dx * f, y0 + dy * f))
        pos += spacing
    return points, (carry + length) % spacing if spacing > 0 else 0.0


def polygon_coverage(points: list[tuple[float, float]], width: int, height: int) -> tuple[Rect, np.ndarray] | None:
    """A filled polygon (lasso, rectangle) as (rect, 0/1 coverage) clipped to the image."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    rect = clip((int(math.floor(min(xs))), int(math.floor(min(ys))), int(math.ceil(max(xs))) + 1, int(math.ceil(max(ys))) + 1), width, height)
    if rect is None:
        return None
    l, t, r, b = rect
    img = Image.new("L", (r - l, b - t), 0)
    ImageDraw.Draw(img).polygon([(x - l, y - t) for x, y in points], fill=255, outline=255)
    return rect, np.asarray(img, np.float32) / 255.0


def fill(mask: np.ndarray, rect: Rect, cover: np.ndarray, opacity: float, erase: bool) -> None:
    """Add (or with ``erase`` remove) ``cover`` at ``opacity`` inside ``rect`` of the mask, in place."""
    l, t, r, b = rect
    value = np.rint(cover * 255.0 * opacity).astype(np.uint8)
    region = mask[t:b, l:r]
    if erase:
        region[...] = np.rint(region.astype(np.float32) * (1.0 - value / 255.0)).astype(np.uint8)
    else:
        np.maximum(region, value, out=region)


def morph_region(mask: np.ndarray, radius: int) -> Rect | None:
    """The rect grow/shrink/feather of ``radius`` can change: the mask's bbox plus the radius."""
    box = bbox(mask)
    if box is None:
        return None
    h, w = mask.shape
    return clip(grown(box, abs(radius) + 2), w, h)


def grow(mask: np.ndarray, radius: int, rect: Rect) -> np.ndarray:
    """The rect of the mask grown (radius > 0) or shrunk (< 0) by ``radius`` pixels, with a round footprint.

    Grey values grow as grey values (a soft edge stays soft). Beyond the image edge the mask is taken
    to continue as it is, so shrinking does not eat in from the border.
    """
    l, t, r, b = rect
    src = mask[t:b, l:r]
    n = abs(radius)
    if n == 0:
        return src.copy()
    op = np.maximum if radius > 0 else np.minimum
    padded = np.pad(src, n, mode="edge")
    hh, ww = src.shape
    # Running op over windows of 2**k columns (doubling), so any window is two lookups.
    tables = [padded]
    while (1 << len(tables)) <= 2 * n + 1:
        prev, step = tables[-1], 1 << (len(tables) - 1)
        tables.append(op(prev[:, :-step], prev[:, step:]))

    def window(half: int) -> np.ndarray:
        start, length = n - half, 2 * half + 1
        k = length.bit_length() - 1
        table, step = tables[k], 1 << k
        return op(table[:, start:start + ww], table[:, start + length - step:start + length - step + ww])

    out = src.copy()
    for dy in range(0, n + 1):
        half = int(math.floor(math.sqrt(n * n - dy * dy) + 0.5))
        w = window(half)
        op(out, w[n + dy:n + dy + hh], out=out)
        if dy:
            op(out, w[n - dy:n - dy + hh], out=out)
    return out


def feather(mask: np.ndarray, radius: int, rect: Rect) -> np.ndarray:
    """The rect of the mask blurred by ``radius`` pixels (a Gaussian): a hard edge becomes a soft ramp."""
    l, t, r, b = rect
    return np.asarray(Image.fromarray(mask[t:b, l:r]).filter(ImageFilter.GaussianBlur(radius)), np.uint8)

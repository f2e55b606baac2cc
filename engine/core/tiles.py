"""Tiled image work, written once: the GAN upscalers, the x4 diffusion upscaler (and the IF
cascade's stage III) cut the source into overlapping tiles, run each alone and cross-fade the
overlaps, so memory is bounded by the tile size. Runs on the calling thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def even_tiles(length: int, tile: int, overlap: int, multiple: int = 1, minimum: int = 1,
               align: int = 1) -> tuple[int, list[int]]:
    """(tile size, start offsets) covering ``length`` px with the fewest tiles of at most ``tile`` px that
    share at least ``overlap`` px, all of one size and evenly spread (2048 px in 512 px tiles: 5 tiles of
    436 px, 2180 px of work, where pushing the last tile back to the edge would cost 2560 px).
    ``multiple``: the tile size is a multiple of it (a diffusion model's size grid; ``tile`` should be one);
    ``minimum``: nor smaller than it (the tiles then share more); ``align``: every start but the last (at
    the far edge) is a multiple of it (the detail upscale's tiles sit on the latent grid, so each takes
    whole latent pixels of one noise field), one more tile where aligning would share less than ``overlap``."""
    if tile >= length:
        return length, [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (n - 1) * overlap) / n))
    size = min(tile, length, -(-max(size, minimum) // multiple) * multiple)
    if align == 1:
        return size, [(i * (length - size)) // (n - 1) for i in range(n)]
    while True:
        starts = [round(i * (length - size) / (n - 1) / align) * align for i in range(n - 1)] + [length - size]
        if n >= length or all(b - a <= size - overlap for a, b in zip(starts, starts[1:])):
            return size, starts
        n += 1


def ramp(length: int, shared: int):
    """Weights along one axis: 0 -> 1 across the ``shared`` px also covered by the previous tile."""
    import numpy as np

    r = np.ones(length, dtype=np.float32)
    band = min(max(shared, 0), length)
    if band:
        r[:band] = (np.arange(band, dtype=np.float32) + 0.5) / band
    return r


def run_tiled(width: int, height: int, scale: int, tile: int, overlap: int,
              run_tile: Callable[[int, int, int, int, int], object],
              on_tile: Callable[[int, int, object, int], None] | None = None, multiple: int = 1, minimum: int = 1,
              align: int = 1):
    """A (height*scale) x (width*scale) x 3 uint8 array made tile by tile.

    ``tile`` >= the larger side means one pass. ``run_tile(index, x, y, w, h)`` returns the tile's
    output, float (h*scale) x (w*scale) x 3 in 0..255; each is cross-faded into what its left and upper
    neighbours wrote. ``on_tile(done, total, out, rows_done)`` after each tile (``out``: the array so
    far) may raise (a cancel). ``multiple``, ``minimum``, ``align``: tile sizes on that grid, at least
    that large, and starts on that grid (``even_tiles``).
    """
    import numpy as np

    tiled = tile < max(width, height)
    tile = tile if tiled else max(width, height)
    overlap = max(0, min(overlap, tile // 2)) if tiled else 0
    (tile_w, xs) = even_tiles(width, tile, overlap, multiple, minimum, align)
    (tile_h, ys) = even_tiles(height, tile, overlap, multiple, minimum, align)
    total = len(xs) * len(ys)
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    done = 0
    for yi, y in enumerate(ys):
        for xi, x in enumerate(xs):
            piece = run_tile(done, x, y, tile_w, tile_h)
            ramp_x = ramp(tile_w * scale, (xs[xi - 1] + tile_w - x) * scale if xi else 0)
            ramp_y = ramp(tile_h * scale, (ys[yi - 1] + tile_h - y) * scale if yi else 0)
            weight = ramp_y[:, None, None] * ramp_x[None, :, None]
            region = out[y * scale:(y + tile_h) * scale, x * scale:(x + tile_w) * scale]
            blended = region.astype(np.float32) * (1.0 - weight) + piece * weight if (xi or yi) else piece
            region[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
            done += 1
            if on_tile is not None:
                on_tile(done, total, out, (y + tile_h) * scale)
    return out


def tile_count(width: int, height: int, tile: int, overlap: int, multiple: int = 1, minimum: int = 1,
               align: int = 1) -> int:
    """How many tiles ``run_tiled`` makes for this size."""
    if tile >= max(width, height):
        return 1
    overlap = max(0, min(overlap, tile // 2))
    return (len(even_tiles(width, tile, overlap, multiple, minimum, align)[1])
            * len(even_tiles(height, tile, overlap, multiple, minimum, align)[1]))

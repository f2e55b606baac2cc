"""The detail upscale (tiled img2img, "Ultimate SD Upscale"'s way), for every family that runs image to
image: the init image is enlarged to the request's size (Lanczos or a GAN: engine.core.upscalers), then
img2img runs over overlapping tiles of at most ``tile`` px with the model and the prompt, and the
overlaps are cross-faded (engine.core.tiles), so memory is bounded by the tile size whatever the image.

Each tile is one ``Runner.generate`` call: progress per step (the tile is the stage), cancel between tiles
and within a tile's steps, the memory ladder and the decode guard come from the core. Image ``n`` has one
noise field over its whole size, from seed ``seed + n`` (engine.core.noise): every tile runs on that seed
and takes the field's window under it, so overlaps start from the same noise, the grain does not change at a
seam nor with the tile size, and the result is reproducible. Tiles start on the 8 px latent grid. Runs on
the engine thread.
"""

from __future__ import annotations

import dataclasses

from engine.api import MIN_SIZE, Result, Timings
from engine.core import hires, regions
from engine.core.job import Job
from engine.core.noise import NoiseField
from engine.core.tiles import run_tiled, tile_count
from engine.core.upscalers import Upscalers, display_name, is_plain

ALIGN = 8  # tile starts on the latent grid of an 8x VAE (and of the 2x test VAEs)


def run(runner, job: Job, upscalers: Upscalers) -> Result:
    """Run ``job`` (an img2img request with ``tile`` set, seed resolved) tile by tile on ``runner``;
    returns images of the request's size. Engine thread."""
    import numpy as np
    from PIL import Image

    request = job.request
    caps = runner.caps
    hires.check(caps, request)
    upscalers.resolve(request.upscaler)
    width, height = request.width, request.height
    grid = max(8, caps.size_step)
    tile = max(grid, request.tile // grid * grid)
    overlap = min(request.tile_overlap, tile // 2)
    tiles = tile_count(width, height, tile, overlap, grid, MIN_SIZE, ALIGN)
    gan = not is_plain(request.upscaler)
    stages = tiles + (1 if gan else 0)

    images, seeds = [], []
    last: Result | None = None
    encode = denoise = decode = 0.0
    for index in range(request.batch_count):
        seed = job.seed(index)
        job.check_cancel()
        # 1. Enlarge the init image to the final size.
        big = upscalers.enlarge(request.init_image, (width, height), request.upscaler,
                                job.phase(request, 1, stages, f"Upscaling with {display_name(request.upscaler)}",
                                          index=index))
        pixels = np.asarray(big)
        noise = NoiseField(seed, width, height)

        # 2. img2img over the tiles, cross-faded into one output buffer.
        def run_tile(number, x, y, w, h, seed=seed, index=index, pixels=pixels, noise=noise):
            nonlocal last, encode, denoise, decode
            job.check_cancel()
            crop = Image.fromarray(pixels[y:y + h, x:x + w])
            tile_request = request.replace(init_image=crop, width=w, height=h, tile=0, batch_count=1,
                                           seed=seed, regions=regions.for_tile(
                                               request.regions, (width, height), (x, y, w, h)))
            stage = number + 1 + (1 if gan else 0)
            last = runner.generate(job.phase(tile_request, stage, stages, f"Detail: tile {number + 1} of {tiles}",
                                             index=index, noise=noise.window(x, y, w, h)))
            encode, denoise, decode = (encode + last.timings.encode, denoise + last.timings.denoise,
                                       decode + last.timings.decode)
            return np.asarray(last.images[0].convert("RGB"), dtype=np.float32)

        out = run_tiled(width, height, 1, tile, overlap, run_tile, lambda *_: job.check_cancel(), multiple=grid,
                        minimum=MIN_SIZE, align=ALIGN)
        images.append(Image.fromarray(out, "RGB"))
        seeds.append(seed)
    job.check_cancel()

    recorded = request.replace(upscaler=display_name(request.upscaler), tile=tile, tile_overlap=overlap)
    return dataclasses.replace(last, images=tuple(images), seeds=tuple(seeds), request=recorded,
                               timings=Timings(encode=encode, denoise=denoise, decode=decode), notices=tuple(job.notices))

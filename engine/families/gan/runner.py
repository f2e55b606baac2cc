"""The GAN upscaler runner: one loaded spandrel model, tiled upscales with progress per tile, cancel
between tiles and inside a tile (between the network's blocks), and the memory ladder (a lower
preset caps the tile size). Every method runs on the engine thread.
"""

from __future__ import annotations

import dataclasses
import time

from engine.api import ModelInfo, UpscaleRequest
from engine.core.job import Job
from engine.core.steps import cancel_within_steps
from engine.core.tiles import tile_count
from engine.families.base import Capabilities, LoadContext, ModeRefused, Runner

REFUSED = "a GAN upscaler enlarges an image: use Upscale"
# The largest tile (px) each preset allows (0: no cap); out of memory, the next preset's smaller tile.
TILE_CAP = {"fast": 0, "balanced": 512, "low": 256, "minimal": 128}


class GANRunner(Runner):
    """One loaded GAN upscaler (an ``engine.upscale.Upscaler``)."""

    def __init__(self, info: ModelInfo, upscaler, caps: Capabilities, ctx: LoadContext, load_seconds: float):
        super().__init__(info, caps, ctx, load_seconds)
        self.upscaler = upscaler
        self.placement.place_new([upscaler.model], ctx.preset)

    def pipelines(self) -> list:
        return [self.upscaler.model]

    def generate(self, job: Job):
        raise ModeRefused(REFUSED)

    def upscale(self, job: Job):
        """Upscale the job's UpscaleRequest; returns an ``engine.upscale.UpscaleResult``."""
        from PIL import Image

        from engine.upscale import upscale_image

        request: UpscaleRequest = job.request
        self.placement.ensure(request.memory_preset, self.pipelines())

        def run():
            cap = TILE_CAP[self.placement.settings.preset]
            tile = min(request.tile, cap) if request.tile and cap else (request.tile or cap)
            total = tile_count(*request.image.size, tile, request.overlap) if tile else 1
            job.check_cancel(0, total)
            with cancel_within_steps([getattr(self.upscaler.model, "model", None)], job):
                return upscale_image(self.upscaler, request.image, tile=tile, overlap=request.overlap,
                                     report=lambda done, n: job.report(done, n))

        result = self.placement.run(run, self.pipelines(), job.notices)
        if request.scale and request.scale != result.scale:  # a x4 model asked for x2: resample its output
            w, h = result.source_size
            image = result.image.resize((w * request.scale, h * request.scale), Image.Resampling.LANCZOS)
            result = dataclasses.replace(result, image=image, scale=request.scale)
        return result


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> GANRunner:
    """Load an upscaler file through spandrel (weights read without running code). Engine thread."""
    from engine.upscale import load_upscaler

    started = time.perf_counter()
    upscaler = load_upscaler(info.path, device="cpu")
    return GANRunner(info, upscaler, caps, ctx, time.perf_counter() - started)

"""The Stable Diffusion x4 upscaler runner (a latent diffusion upscaler), run tiled so memory stays bounded.

A request for it is an ordinary generation (``engine.families.upscale_request`` builds one):
``Mode.IMG2IMG`` with the source as ``init_image`` and the final size (4x the source) as width/height.
Its UNet works at the source's resolution and its VAE decodes 4x that, so a large source is cut into
overlapping tiles (``X4_TILES`` px per memory preset), each tile is upscaled alone and the
overlaps are cross-faded (``engine.core.tiles``). All tiles start from one seeded noise
field for the whole image, so overlapping tiles agree and a request regenerates identically.
The DeepFloyd IF cascade runs this as its stage III. Everything here runs on the engine thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine import imageprep
from engine.api import ModelInfo, Result, Timings, batch_seed
from engine.core import decode as core_decode
from engine.core import prompt_policy
from engine.core.job import Job
from engine.core.loading import pretrained
from engine.core.steps import cancel_within_steps
from engine.core.tiles import run_tiled, tile_count
from engine.families.base import Capabilities, LoadContext, Runner
from engine.families.sd_x4.requests import SCALE
from engine.metadata.fields import UPSCALE_BY

log = logging.getLogger(__name__)

NOISE_LEVEL = 20  # diffusers' and the model card's default: how much the source is noised before upscaling
OVERLAP = 32  # source px shared by neighbouring tiles (128 px of output cross-faded)
_PREVIEW_SIDE = 512
# Source tile (px) per preset: the UNet works at the source's resolution and the VAE decodes 4x that,
# so the tile bounds memory (about 1.5 GB at 128 px for the real model in fp16).
X4_TILES = {"fast": 256, "balanced": 192, "low": 128, "minimal": 128}


@dataclass(frozen=True)
class TileJob:
    """What one upscale runs with (the same for every tile)."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    noise_level: int
    seed: int
    tile: int
    overlap: int = OVERLAP


def load_x4(path: str, dtype, name: str = ""):
    """The StableDiffusionUpscalePipeline in ``path`` on the CPU (a Placement puts it on the device)."""
    import diffusers

    from engine.files.folders import weights_variant

    return pretrained(diffusers.StableDiffusionUpscalePipeline, path, name or path, "this x4 upscaler", dtype=dtype,
                      variant=weights_variant(path), safety_checker=None, feature_extractor=None, watermarker=None)


def upscale_tiled(pipe, image, spec: TileJob, job: Job, report: Callable[[int, int, object], None],
                  notices: list[str]):
    """``image`` (PIL RGB) upscaled 4x by ``pipe``, tile by tile; returns a PIL RGB image.

    ``report(done, total, preview)`` after every denoising step of every tile (``total`` = tiles x
    steps; it raises Cancelled when the job is cancelled); a tile's last step comes once the tile is
    blended in, with ``preview`` = the output so far (at most 512 px), else None. Memory: the uint8
    output plus one tile's activations.
    """
    import torch
    from PIL import Image

    w, h = image.size
    total = tile_count(w, h, spec.tile, spec.overlap) * spec.steps
    # Tiles are padded to the UNet's grid (and the image processor's multiple of the VAE factor).
    multiple = max(8, 2 ** (len(pipe.unet.config.block_out_channels) - 1))
    latent_channels = pipe.vae.config.latent_channels
    # One noise field for the whole source: the tiles' shared pixels start from the same noise.
    noise = torch.randn((1, latent_channels, h + multiple, w + multiple),
                        generator=torch.Generator("cpu").manual_seed(spec.seed), dtype=torch.float32)
    guided = spec.guidance_scale > 1.0
    embeds, negative = pipe.encode_prompt(spec.prompt, pipe._execution_device, 1, guided,
                                          spec.negative_prompt or None)
    rgb = image.convert("RGB")

    def run_tile(index: int, x: int, y: int, tw: int, th: int):
        tw, th = min(tw, w - x), min(th, h - y)
        pw, ph = -(-tw // multiple) * multiple, -(-th // multiple) * multiple
        piece = _pad(rgb.crop((x, y, x + tw, y + th)), pw, ph)
        start = index * spec.steps

        def on_tile_step(i, _t, _latents):
            if i + 1 < spec.steps:  # a tile's last step is reported with its preview
                report(start + i + 1, total, None)

        job.check_cancel(start, total)
        with cancel_within_steps([pipe.unet], job):
            pixels = _run_tile(pipe, piece, noise[:, :, y:y + ph, x:x + pw], embeds, negative, spec,
                               torch.Generator("cpu").manual_seed(batch_seed(spec.seed, 1 + index)), on_tile_step,
                               notices)
        return pixels[: th * SCALE, : tw * SCALE]

    out = run_tiled(w, h, SCALE, spec.tile, spec.overlap, run_tile,
                    lambda done, _n, out, rows: report(done * spec.steps, total, _preview(out, rows)))
    return Image.fromarray(out, "RGB")


def _run_tile(pipe, piece, latents, embeds, negative, job: TileJob, generator, callback, notices):
    """One tile through the pipeline: float32 HxWx3 in 0..255, decoded with the core's guard (never a
    silent black tile)."""
    import numpy as np

    out = pipe(
        image=piece, prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=job.steps,
        guidance_scale=job.guidance_scale, noise_level=job.noise_level, generator=generator,
        latents=latents.to(dtype=pipe.unet.dtype), output_type="latent", callback=callback, callback_steps=1,
    ).images
    vae = pipe.vae
    upcast = str(vae.dtype) == "torch.float16" and getattr(vae.config, "force_upcast", False)
    decoded = core_decode.decode(vae, out, notices if notices is not None else [], upcast=upcast)
    arr = (decoded[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return np.asarray(arr, dtype=np.float32) * 255.0


def _pad(piece, width: int, height: int):
    from engine.imageprep import pad_edges

    return pad_edges(piece, (width, height))


def _preview(out, rows: int):
    from PIL import Image

    image = Image.fromarray(out[:rows], "RGB")
    image.thumbnail((_PREVIEW_SIDE, _PREVIEW_SIDE))
    return image


class X4Runner(Runner):
    """One loaded x4 upscaler, run as a generation (Mode.IMG2IMG, init_image = the source,
    width/height = 4x the source)."""

    def __init__(self, info: ModelInfo, pipe, caps: Capabilities, ctx: LoadContext, load_seconds: float):
        # The x4 runner tiles the image itself: diffusers' VAE tiling inside its tiles would add seams.
        super().__init__(info, caps, ctx, load_seconds, vae_tiling=False)
        self.pipe = pipe
        self.placement.place_new([pipe], ctx.preset)

    def pipelines(self) -> list:
        return [self.pipe]

    def generate(self, job: Job) -> Result:
        """Upscale ``request.init_image`` 4x (seed resolved). Runs on the engine thread."""
        import torch
        from PIL import Image

        request = job.request
        self.caps.check(request.mode)
        source = request.init_image.convert("RGB")
        size = (request.width // SCALE, request.height // SCALE)
        if source.size != size:
            log.info("x4: source %sx%s resized to %sx%s for a %sx%s result", *source.size, *size,
                     request.width, request.height)
            source = source.resize(size, Image.Resampling.LANCZOS)
        self.placement.ensure(request.memory_preset, [self.pipe])
        text = prompt_policy.prepare(request.prompt, request.negative_prompt, self.caps.group, loras=False,
                                     weighting=False, notices=job.notices)

        def run():
            images, seeds = [], []
            with torch.inference_mode():
                for index in range(request.batch_count):
                    seed = job.seed(index)
                    spec = TileJob(text.prompt, text.negative, request.steps, request.guidance_scale, NOISE_LEVEL, seed,
                                   X4_TILES[self.placement.settings.preset])

                    def on_step(done, total, preview, index=index):
                        job.report(done, total, index, preview)

                    images.append(upscale_tiled(self.pipe, source, spec, job, on_step, job.notices))
                    seeds.append(seed)
            return images, seeds

        t0 = time.perf_counter()
        images, seeds = self.placement.run(run, [self.pipe], job.notices)
        # Which image was enlarged (A1111's "Init image hash"), so regenerating with another source warns;
        # and that this image-to-image request is an upscale (the gallery says so, not "Mode img2img").
        params = (("Init image hash", imageprep.source_hash(request.init_image)), (UPSCALE_BY, str(SCALE)))
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.settings, timings=Timings(denoise=time.perf_counter() - t0),
                      params=params, notices=tuple(job.notices))


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> X4Runner:
    """Load an x4 upscaler folder (safetensors only). Runs on the engine thread."""
    started = time.perf_counter()
    pipe = load_x4(info.path, ctx.dtype, info.name)
    return X4Runner(info, pipe, caps, ctx, time.perf_counter() - started)

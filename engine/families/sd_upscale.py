"""The Stable Diffusion x4 upscaler (a latent diffusion upscaler), run tiled so memory stays bounded.

A request for it is an ordinary generation (``engine.families.upscale_request`` builds one):
``Mode.IMG2IMG`` with the source as ``init_image`` and the final size (4x the source) as width/height.
Its UNet works at the source's resolution and its VAE decodes 4x that, so a large source is cut into
overlapping tiles (``placement.X4_TILES`` px per memory preset), each tile is upscaled alone and the
overlaps are cross-faded (``engine.upscale``'s grid and ramps). All tiles start from one seeded noise
field for the whole image, so overlapping tiles agree and a request regenerates identically.
The DeepFloyd IF cascade runs this as its stage III. Everything here runs on the engine thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from engine.api import (
    Cancelled,
    EaselError,
    GenerationRequest,
    InvalidRequest,
    ModelError,
    ModelInfo,
    Mode,
    Progress,
    Result,
    Timings,
)
from engine.families import placement

log = logging.getLogger(__name__)

SCALE = 4
NOISE_LEVEL = 20  # diffusers' and the model card's default: how much the source is noised before upscaling
OVERLAP = 32  # source px shared by neighbouring tiles (128 px of output cross-faded)
_PREVIEW_SIDE = 512


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


def load_x4(path: str, device: str, dtype, name: str = ""):
    """The StableDiffusionUpscalePipeline in ``path`` on the CPU (placement puts it on the device)."""
    import diffusers

    from engine import loading  # noqa: F401  (quiets diffusers/transformers progress bars)
    from engine.families.cascade_files import weights_variant

    try:
        pipe = diffusers.StableDiffusionUpscalePipeline.from_pretrained(
            path, local_files_only=True, use_safetensors=True, dtype=dtype, variant=weights_variant(path),
            safety_checker=None, feature_extractor=None, watermarker=None,
        )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelError(name or path, f"could not load this x4 upscaler: {line}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def upscale_tiled(pipe, image, job: TileJob, on_step=None, cancel: threading.Event | None = None,
                  notices: list[str] | None = None):
    """``image`` (PIL RGB) upscaled 4x by ``pipe``, tile by tile; returns a PIL RGB image.

    ``on_step(done, total, preview)`` after every denoising step of every tile (``total`` = tiles x
    steps); a tile's last step comes once the tile is blended in, with ``preview`` = the output so
    far (at most 512 px), else None. ``cancel`` stops within one step with Cancelled. Memory: the
    uint8 output plus one tile's activations.
    """
    import numpy as np
    import torch
    from PIL import Image

    from engine.upscale import _ramp, tile_grid

    w, h = image.size
    tiled = job.tile < max(w, h)
    tile = job.tile if tiled else max(w, h)
    overlap = min(job.overlap, tile // 2) if tiled else 0
    xs, ys = tile_grid(w, tile, overlap), tile_grid(h, tile, overlap)
    total = len(xs) * len(ys) * job.steps
    # Tiles are padded to the UNet's grid (and the image processor's multiple of the VAE factor).
    multiple = max(8, 2 ** (len(pipe.unet.config.block_out_channels) - 1))
    latent_channels = pipe.vae.config.latent_channels
    # One noise field for the whole source: the tiles' shared pixels start from the same noise.
    noise = torch.randn((1, latent_channels, h + multiple, w + multiple),
                        generator=torch.Generator("cpu").manual_seed(job.seed), dtype=torch.float32)
    guided = job.guidance_scale > 1.0
    embeds, negative = pipe.encode_prompt(job.prompt, pipe._execution_device, 1, guided,
                                          job.negative_prompt or None)
    out = np.empty((h * SCALE, w * SCALE, 3), dtype=np.uint8)
    rgb = image.convert("RGB")
    done = 0
    index = 0
    for yi, y in enumerate(ys):
        for xi, x in enumerate(xs):
            tw, th = min(tile, w - x), min(tile, h - y)
            pw, ph = -(-tw // multiple) * multiple, -(-th // multiple) * multiple
            piece = _pad(rgb.crop((x, y, x + tw, y + th)), pw, ph)
            start = done

            def on_tile_step(i, _t, _latents, start=start):
                nonlocal done
                done = start + i + 1
                if on_step is not None and i + 1 < job.steps:  # a tile's last step is reported with its preview
                    on_step(done, total, None)
                if cancel is not None and cancel.is_set():
                    raise Cancelled(done, total)

            if cancel is not None and cancel.is_set():
                raise Cancelled(done, total)
            pixels = _run_tile(pipe, piece, noise[:, :, y:y + ph, x:x + pw], embeds, negative, job,
                               torch.Generator("cpu").manual_seed((job.seed + 1 + index) % 2**32), on_tile_step,
                               notices)
            pixels = pixels[: th * SCALE, : tw * SCALE]
            ramp_x = _ramp(tw * SCALE, (xs[xi - 1] + tile - x) * SCALE if xi else 0)
            ramp_y = _ramp(th * SCALE, (ys[yi - 1] + tile - y) * SCALE if yi else 0)
            weight = ramp_y[:, None, None] * ramp_x[None, :, None]
            region = out[y * SCALE:(y + th) * SCALE, x * SCALE:(x + tw) * SCALE]
            blended = region.astype(np.float32) * (1.0 - weight) + pixels * weight if (xi or yi) else pixels
            region[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
            index += 1
            if on_step is not None:
                on_step(done, total, _preview(out, y * SCALE + th * SCALE))
    return Image.fromarray(out, "RGB")


def _run_tile(pipe, piece, latents, embeds, negative, job: TileJob, generator, callback, notices):
    """One tile through the pipeline: float32 HxWx3 in 0..255. Half precision that decodes to NaN is
    decoded again with the VAE in float32 (never a silent black tile)."""
    import numpy as np
    import torch

    for attempt in range(2):
        arr = pipe(
            image=piece, prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=job.steps,
            guidance_scale=job.guidance_scale, noise_level=job.noise_level, generator=generator,
            latents=latents.to(dtype=pipe.unet.dtype), output_type="np", callback=callback, callback_steps=1,
        ).images[0]
        if np.isfinite(arr).all():
            return np.clip(arr, 0.0, 1.0) * 255.0
        if attempt or pipe.vae.dtype == torch.float32:
            break
        pipe.vae.to(torch.float32)
        if notices is not None:
            notices.append("The x4 upscaler's VAE gave an empty image in half precision; Easel decodes it in full "
                           "precision now.")
        generator = torch.Generator("cpu").manual_seed(generator.initial_seed())
    raise EaselError("the x4 upscaler produced an invalid image (NaN values); try the CPU or another memory preset")


def plain_prompt(text: str) -> str:
    """A1111 prompt syntax as plain text: LoRA tags left out, ``(word:1.2)`` weights dropped."""
    from engine.prompts import extract_loras, parse_weights

    return "".join(fragment for fragment, _ in parse_weights(extract_loras(text).text))


def _pad(piece, width: int, height: int):
    from engine.imageprep import pad_edges

    return pad_edges(piece, (width, height))


def _preview(out, rows: int):
    from PIL import Image

    image = Image.fromarray(out[:rows], "RGB")
    image.thumbnail((_PREVIEW_SIDE, _PREVIEW_SIDE))
    return image


class X4Runner:
    """One loaded x4 upscaler, run as a generation (contract: Mode.IMG2IMG, init_image = the source,
    width/height = 4x the source)."""

    def __init__(self, info: ModelInfo, pipe, device: str, dtype, load_seconds: float):
        self.info = info
        self.pipe = pipe
        self.device = device
        self.load_seconds = load_seconds
        self.placement = placement.Placement(info.family, device, dtype)

    def generate(self, request: GenerationRequest, on_progress, cancel: threading.Event | None,
                 model_hash: str, started: float) -> Result:
        """Upscale ``request.init_image`` 4x (seed already resolved). Runs on the engine thread."""
        import torch
        from PIL import Image

        if request.mode is not Mode.IMG2IMG or request.init_image is None:
            raise InvalidRequest("init_image", "the x4 upscaler enlarges an image: use Upscale, or give an image")
        source = request.init_image.convert("RGB")
        size = (request.width // SCALE, request.height // SCALE)
        notices: list[str] = []
        if source.size != size:
            log.info("x4: source %sx%s resized to %sx%s for a %sx%s result", *source.size, *size,
                     request.width, request.height)
            source = source.resize(size, Image.Resampling.LANCZOS)
        pipes = [self.pipe]
        self.placement.ensure(request.memory_preset, pipes)

        def job():
            images, seeds = [], []
            with torch.inference_mode():
                for index in range(request.batch_count):
                    seed = (request.seed + index) % 2**32
                    spec = TileJob(plain_prompt(request.prompt), plain_prompt(request.negative_prompt), request.steps,
                                   request.guidance_scale,
                                   NOISE_LEVEL, seed, placement.X4_TILES[self.placement.settings.preset])

                    def on_step(done, total, preview, index=index):
                        if on_progress is not None:
                            on_progress(Progress(step=done, total=total, elapsed=time.perf_counter() - started,
                                                 image_index=index, batch_count=request.batch_count, preview=preview))

                    images.append(upscale_tiled(self.pipe, source, spec, on_step, cancel, notices))
                    seeds.append(seed)
            return images, seeds

        t0 = time.perf_counter()
        images, seeds = self.placement.run(job, pipes, notices)
        # Which image was enlarged (A1111's "Init image hash"), so regenerating with another source warns.
        from engine.families.unclip import source_hash

        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=model_hash, settings=self.placement.settings,
                      timings=Timings(denoise=time.perf_counter() - t0, total=time.perf_counter() - started),
                      params=(("Init image hash", source_hash(request.init_image)),), notices=tuple(notices))

    def close(self) -> None:
        """Free the pipeline's device memory. Engine thread."""
        placement.free([self.pipe], self.device)
        self.pipe = None


def load(info: ModelInfo, device: str, dtype) -> X4Runner:
    """Load an x4 upscaler folder (safetensors only). Runs on the engine thread."""
    started = time.perf_counter()
    pipe = load_x4(info.path, device, dtype, info.name)
    return X4Runner(info, pipe, device, dtype, time.perf_counter() - started)

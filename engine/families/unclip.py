"""Stable unCLIP: DALL·E 2-style image variations, where a CLIP image embedding drives the decoder.

The source image goes through the CLIP image encoder; its embedding, with noise added at
``noise_level``, conditions an SD 2.x UNet (as its class embedding) that draws a new image from fresh
latent noise. So a variation keeps what CLIP sees in the image (subject, style, palette), not its
pixel layout, and the prompt is optional.

Strength to noise level: ``noise_level = round(strength * 1000)``, clamped to the image-noising
schedule (0 .. num_train_timesteps - 1, i.e. 999). "Vary (subtle)" 0.35 -> 350 keeps the embedding
mostly intact; "Vary (strong)" 0.7 -> 700 drowns most of it, so the result strays further; 1.0 -> 999
leaves almost nothing of the source. The noise added to the embedding is drawn from the image's own
seeded generator, so one seed always gives one image (on CPU, bit for bit).

Only image-conditioned requests (Mode.IMG2IMG with ``init_image``) run; text-to-image is refused with
one plain line (it needs the separate Karlo prior, which Easel does not run). All methods run on the
engine thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from engine import imageprep, prompts
from engine.api import (
    MAX_SEED,
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
from engine.preview import latents_to_preview
from engine.samplers import make_scheduler

log = logging.getLogger(__name__)

TXT2IMG_REFUSED = "Stable unCLIP makes variations of an image: use Variations, or give an image"
INPAINT_REFUSED = "Stable unCLIP makes variations of a whole image; it cannot inpaint: use an inpainting model"
PREVIEW_EVERY = 2


class ImageNeeded(InvalidRequest):
    """A request this model cannot run without an image; ``str()`` is the plain line alone."""

    def __init__(self, field_name: str, message: str):
        super().__init__(field_name, message)
        self.args = (message,)


def noise_level(strength: float, train_timesteps: int = 1000) -> int:
    """The unCLIP ``noise_level`` for a variation ``strength`` in (0, 1] (see the module docstring). Any thread."""
    return max(0, min(train_timesteps - 1, round(float(strength) * 1000)))


def source_hash(image) -> str:
    """A1111's "Init image hash": the MD5 of the source's RGB pixel bytes, so the metadata says which
    image a variation came from without embedding it. Any thread."""
    return hashlib.md5(imageprep.as_rgb(image).tobytes()).hexdigest()


class UnclipRunner:
    """One loaded Stable unCLIP image-variations model."""

    def __init__(self, info: ModelInfo, pipe, device: str, dtype, load_seconds: float):
        self.info = info
        self.pipe = pipe
        self.device = device
        self.dtype = dtype
        self.load_seconds = load_seconds
        self.scheduler_config = dict(pipe.scheduler.config)
        # The SD 2 "auto" thresholds (the same UNet); VAE tiling at the low presets, as the SD path.
        self.placement = placement.Placement("sd2", device, dtype, vae_tiling=True)

    @property
    def settings(self):
        return self.placement.settings

    # -------------------------------------------------------------- generation

    def generate(self, request: GenerationRequest, on_progress, cancel: threading.Event | None,
                 model_hash: str, started: float) -> Result:
        """Run ``request`` (seed already resolved): ``batch_count`` variations of ``init_image``, seeds
        seed, seed+1, ... Raises InvalidRequest for text-to-image / inpaint requests. Engine thread."""
        # 1. Check inputs: only image variations.
        if request.mode is Mode.TXT2IMG or request.init_image is None:
            raise ImageNeeded("init_image", TXT2IMG_REFUSED)
        if request.mode is Mode.INPAINT:
            raise ImageNeeded("mode", INPAINT_REFUSED)
        _check(cancel, 0, request.steps)
        notices: list[str] = []
        self.placement.ensure(request.memory_preset, [self.pipe])

        # 2. The source as CLIP sees it, the noise level, and the output crop (sizes off the 8 px grid).
        source = imageprep.as_rgb(request.init_image)
        level = noise_level(request.strength, self.pipe.image_noising_scheduler.config.num_train_timesteps)
        crop = source.size if imageprep.padded_size(*source.size) == (request.width, request.height) \
            and source.size != (request.width, request.height) else None
        parsed = prompts.extract_loras(request.prompt)
        parsed_neg = prompts.extract_loras(request.negative_prompt)
        if parsed.loras or parsed_neg.loras:
            notices.append("LoRAs are not applied to Stable unCLIP variations; the <lora:...> tags were ignored.")
        notices += list(parsed.problems) + list(parsed_neg.problems)

        # 3. Run; out of memory, again one memory preset lower (as the SD path does).
        images, seeds, phases = self.placement.run(
            lambda: self._run(request, source, level, crop, parsed.text, parsed_neg.text, on_progress, cancel,
                              started),
            [self.pipe], notices)

        # 4. Result: the request as run; the metadata says the noise level and which image was the source.
        encode, denoise, decode = phases
        params = (("Noise level", str(level)), ("Init image hash", source_hash(source)))
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=model_hash, settings=self.settings,
                      timings=Timings(encode=encode, denoise=denoise, decode=decode,
                                      total=time.perf_counter() - started),
                      params=params, notices=tuple(notices))

    def _run(self, request, source, level, crop, text, negative, on_progress, cancel, started):
        """The batch, one image per seed; returns (images, seeds, (encode, denoise, decode) seconds)."""
        import torch

        pipe = self.pipe
        encode = denoise = decode = 0.0
        images, seeds = [], []
        try:
            with torch.inference_mode():
                t0 = time.perf_counter()
                embeds = prompts.encode_prompts(pipe, "sd2", text, negative, request.clip_skip)
                encode += time.perf_counter() - t0
                for index in range(request.batch_count):
                    seed = (request.seed + index) % (MAX_SEED + 1)
                    _check(cancel, 0, request.steps)
                    t0 = time.perf_counter()
                    pipe.scheduler = make_scheduler(request.sampler, self.scheduler_config, seed)
                    latents = pipe(
                        image=source,
                        **embeds,
                        height=request.height,
                        width=request.width,
                        num_inference_steps=request.steps,
                        guidance_scale=request.guidance_scale,
                        noise_level=level,
                        generator=torch.Generator("cpu").manual_seed(seed),
                        output_type="latent",
                        callback=self._step_callback(request, index, on_progress, cancel, started),
                        callback_steps=1,
                    ).images
                    denoise += time.perf_counter() - t0
                    _check(cancel, request.steps, request.steps)
                    t0 = time.perf_counter()
                    image = self._decode(latents)
                    if crop is not None:
                        image = image.crop((0, 0, *crop))
                    decode += time.perf_counter() - t0
                    images.append(image)
                    seeds.append(seed)
        finally:
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()
        return images, seeds, (encode, denoise, decode)

    def _step_callback(self, request, index, on_progress, cancel, started):
        size = (request.width, request.height)
        total = request.steps

        def on_step(i, _t, latents):
            step = i + 1
            if on_progress is not None:
                preview = None
                if step % PREVIEW_EVERY == 0 or step == total:
                    preview = latents_to_preview(latents, "sd2", size)
                on_progress(Progress(step=step, total=total, elapsed=time.perf_counter() - started,
                                     image_index=index, batch_count=request.batch_count, preview=preview))
            _check(cancel, step, total)

        return on_step

    def _decode(self, latents):
        """Latents to a PIL image; NaN/black runs the VAE again in fp32, else a plain error."""
        import torch

        vae = self.pipe.vae

        def run(dtype):
            original = vae.dtype
            if dtype != original:
                vae.to(dtype)
            try:
                return vae.decode(latents.to(dtype) / vae.config.scaling_factor, return_dict=False)[0].float()
            finally:
                if dtype != original:
                    vae.to(original)

        decoded = run(vae.dtype)
        if _bad(torch, decoded) and vae.dtype != torch.float32:
            decoded = run(torch.float32)
        if _bad(torch, decoded):
            raise EaselError("the image came out blank: the model produced invalid values (NaN); "
                             "try a lower CFG scale or another sampler")
        return self.pipe.image_processor.postprocess(decoded, output_type="pil")[0]


def load(info: ModelInfo, device: str, dtype) -> UnclipRunner:
    """Load a Stable unCLIP (image variations) diffusers folder, safetensors only, offline. Engine thread."""
    import diffusers

    started = time.perf_counter()
    try:
        pipe = diffusers.StableUnCLIPImg2ImgPipeline.from_pretrained(
            info.path, local_files_only=True, use_safetensors=True, dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError, ImportError) as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelError(info.name, f"could not load this Stable unCLIP model: {line}") from exc
    pipe.set_progress_bar_config(disable=True)
    runner = UnclipRunner(info, pipe, device, dtype, time.perf_counter() - started)
    runner.placement.ensure("auto", [pipe])
    return runner


def _bad(torch, decoded) -> bool:
    return not bool(torch.isfinite(decoded).all()) or float(decoded.max()) <= -0.99


def _check(cancel: threading.Event | None, step: int, total: int) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(step, total)

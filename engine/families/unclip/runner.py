"""The Stable unCLIP runner: DALL·E 2-style image variations, where a CLIP image embedding drives the
decoder.

The source image goes through the CLIP image encoder; its embedding, with noise added at
``noise_level``, conditions an SD 2.x UNet (as its class embedding) that draws a new image from fresh
latent noise. So a variation keeps what CLIP sees in the image (subject, style, palette), not its
pixel layout, and the prompt is optional. The noise added to the embedding is drawn from the image's
own seeded generator, so one seed always gives one image (on CPU, bit for bit). All methods run on
the engine thread.
"""

from __future__ import annotations

import time

from engine import imageprep, prompts
from engine.api import ModelInfo, Result, Timings
from engine.core import decode as core_decode
from engine.core import prompt_policy
from engine.core.job import Job
from engine.core.loading import pretrained
from engine.core.previews import Previews
from engine.core.steps import StepReporter, cancel_within_steps
from engine.families.base import Capabilities, LoadContext, Runner
from engine.samplers import make_scheduler


def noise_level(strength: float, train_timesteps: int = 1000) -> int:
    """The unCLIP ``noise_level`` for a variation ``strength`` in (0, 1]: ``round(strength * 1000)``,
    clamped to the image-noising schedule. "Vary (subtle)" 0.35 -> 350 keeps the embedding mostly
    intact; "Vary (strong)" 0.7 -> 700 drowns most of it. Any thread."""
    return max(0, min(train_timesteps - 1, round(float(strength) * 1000)))


class UnclipRunner(Runner):
    """One loaded Stable unCLIP image-variations model."""

    def __init__(self, info: ModelInfo, pipe, caps: Capabilities, ctx: LoadContext, load_seconds: float):
        super().__init__(info, caps, ctx, load_seconds)
        self.pipe = pipe
        self.scheduler_config = dict(pipe.scheduler.config)
        self.previews = Previews(caps.latent_space, ctx.library, ctx.device, ctx.dtype)
        self.placement.place_new([pipe], ctx.preset)

    def pipelines(self) -> list:
        return [self.pipe]

    def generate(self, job: Job) -> Result:
        """``batch_count`` variations of ``init_image``, seeds seed, seed+1, ... Engine thread."""
        # 1. Check inputs: only image variations.
        request = job.request
        self.caps.check(request.mode)
        self.placement.ensure(request.memory_preset, [self.pipe])

        # 2. The source as CLIP sees it, the noise level, and the output crop (sizes off the 8 px grid).
        source = imageprep.as_rgb(request.init_image)
        level = noise_level(request.strength, self.pipe.image_noising_scheduler.config.num_train_timesteps)
        crop = source.size if imageprep.padded_size(*source.size) == (request.width, request.height) \
            and source.size != (request.width, request.height) else None
        text = prompt_policy.prepare(request.prompt, request.negative_prompt, self.caps.group, loras=False,
                                     weighting=True, notices=job.notices)

        # 3. Run; out of memory, again one memory preset lower.
        images, seeds, phases = self.placement.run(lambda: self._run(job, source, level, crop, text),
                                                   [self.pipe], job.notices)

        # 4. Result: the metadata says the noise level and which image was the source.
        encode, denoise, decode = phases
        params = (("Noise level", str(level)), ("Init image hash", imageprep.source_hash(source)))
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.settings,
                      timings=Timings(encode=encode, denoise=denoise, decode=decode),
                      params=params, notices=tuple(job.notices))

    def _run(self, job: Job, source, level, crop, text):
        import torch

        request = job.request
        pipe = self.pipe
        encode = denoise = decode = 0.0
        images, seeds = [], []
        preview = self.previews.for_size((request.width, request.height))
        try:
            with torch.inference_mode():
                t0 = time.perf_counter()
                embeds = prompts.encode_prompts(pipe, "sd2", text.prompt, text.negative, request.clip_skip)
                encode += time.perf_counter() - t0
                for index in range(request.batch_count):
                    seed = job.seed(index)
                    job.check_cancel(0)
                    t0 = time.perf_counter()
                    pipe.scheduler = make_scheduler(request.sampler, self.scheduler_config, seed)
                    reporter = StepReporter(job, index, preview=preview)
                    with cancel_within_steps([pipe.unet], reporter):
                        latents = pipe(
                            image=source, **embeds, height=request.height, width=request.width,
                            num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                            noise_level=level, generator=torch.Generator("cpu").manual_seed(seed),
                            output_type="latent", callback=reporter.legacy, callback_steps=1,
                        ).images
                    denoise += time.perf_counter() - t0
                    job.check_cancel(request.steps)
                    t0 = time.perf_counter()
                    decoded = core_decode.decode(pipe.vae, latents, job.notices)
                    image = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
                    if crop is not None:
                        image = image.crop((0, 0, *crop))
                    decode += time.perf_counter() - t0
                    images.append(image)
                    seeds.append(seed)
        finally:
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()
        return images, seeds, (encode, denoise, decode)


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> UnclipRunner:
    """Load a Stable unCLIP (image variations) diffusers folder, safetensors only, offline. Engine thread."""
    import diffusers

    started = time.perf_counter()
    pipe = pretrained(diffusers.StableUnCLIPImg2ImgPipeline, info.path, info.name, "this Stable unCLIP model",
                      dtype=ctx.dtype)
    return UnclipRunner(info, pipe, caps, ctx, time.perf_counter() - started)

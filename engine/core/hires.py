"""The hires fix (A1111's), for every family that runs image to image: one job in two phases.

Phase 1 is the text-to-image request at the size asked; each image is enlarged (a Lanczos resize, or a
GAN upscaler from the library: engine.core.upscalers); phase 2 is an img2img pass at the large size with
``hires_steps`` and ``hires_strength``, on the same seed. With a "Latent" upscaler (A1111's), phase 1's
latents are enlarged instead (engine.core.upscalers.enlarge_latents) and phase 2 denoises from them, for a
family whose capabilities declare ``latent_upscale`` (its runner hands over the latents through the Job).
Both phases run through the family's own ``Runner.generate``, so each has the core's guarantees (progress
per step, cancel within a step, the out-of-memory ladder, the decode guard). Runs on the engine thread.
"""

from __future__ import annotations

import dataclasses

from engine.api import PLAIN_UPSCALER, InvalidRequest, Mode, Result, Timings
from engine.core.job import Job
from engine.core.upscalers import Upscalers, display_name, enlarge_latents, is_latent, is_plain, latent_name


def check(caps, request) -> None:
    """Refuse (one plain line) a hires fix or tiled img2img the model cannot run, before any work."""
    what = "the hires fix" if request.hires else "the detail upscale"
    field = "hires_scale" if request.hires else "tile"
    if caps.role != "generator" or Mode.IMG2IMG not in caps.modes:
        raise InvalidRequest(field, f"{caps.label} cannot run {what}: it needs a model that runs image to image")
    if caps.sizes is not None:
        raise InvalidRequest(field, f"{caps.label} cannot run {what}: it makes only its own sizes, not one image to "
                             "image pass at any size")
    if request.hires:
        if is_latent(request.upscaler) and latent_name(request.upscaler) and not caps.latent_upscale:
            raise InvalidRequest("upscaler", f"{caps.label} cannot use the {latent_name(request.upscaler)} upscaler: "
                                 f"its image to image pass does not start from latents; use {PLAIN_UPSCALER} or a GAN "
                                 "upscaler")
        steps = request.hires_steps or request.steps
        if caps.strength_shortens and int(steps * request.hires_strength) < 1:
            raise InvalidRequest("hires_steps", f"{steps} hires steps at denoising strength "
                                 f"{request.hires_strength:g} would run no step: raise one of them")


def run(runner, job: Job, upscalers: Upscalers) -> Result:
    """Run ``job`` (a txt2img request with ``hires_scale`` set, seed resolved) as the hires fix on
    ``runner``; returns the enlarged images with the request as asked. Engine thread."""
    request = job.request
    check(runner.caps, request)
    latent = latent_name(request.upscaler)
    if not latent:
        upscalers.resolve(request.upscaler)  # an unknown upscaler is said before phase 1 runs
    width, height = request.output_size
    gan = not latent and not is_plain(request.upscaler)
    stages = 3 if gan else 2

    # 1. Phase 1: the image at the size asked (the whole batch at once; with a latent upscaler, its latents too).
    first_job = job.phase(request.replace(hires_scale=0.0), 1, stages,
                          f"Hires fix: first pass {request.width}x{request.height}")
    first_job.latents = [] if latent else None
    first = runner.generate(first_job)
    job.check_cancel()

    images, settings = [], first.settings
    encode, denoise, decode = first.timings.encode, first.timings.denoise, first.timings.decode
    for index, (image, seed) in enumerate(zip(first.images, first.seeds)):
        # 2. Enlarge (a GAN's tiles report as their own stage); a latent upscaler enlarges the latents, and
        #    the picture the request records as its init image is a plain resize.
        init_latents = None
        if latent:
            small = first_job.latents[index]
            per_px = request.width // small.shape[-1]  # the VAE's px per latent px
            init_latents = enlarge_latents(small, (width // per_px, height // per_px), latent)
            big = upscalers.enlarge(image, (width, height), PLAIN_UPSCALER)
        else:
            big = upscalers.enlarge(image, (width, height), request.upscaler,
                                    job.phase(request, 2, stages, f"Hires fix: upscaling with {display_name(request.upscaler)}",
                                              index=index))
        job.check_cancel()

        # 3. Phase 2: img2img at the large size, on the same seed.
        second_request = first.request.replace(
            mode=Mode.IMG2IMG, init_image=big, width=width, height=height, seed=seed, batch_count=1,
            steps=request.hires_steps or request.steps, strength=request.hires_strength, hires_scale=0.0)
        second_job = job.phase(second_request, stages, stages, f"Hires fix: second pass {width}x{height}", index=index)
        second_job.init_latents = init_latents
        second = runner.generate(second_job)
        images.extend(second.images)
        settings = second.settings
        encode, denoise, decode = encode + second.timings.encode, denoise + second.timings.denoise, decode + second.timings.decode
    job.check_cancel()

    recorded = first.request.replace(hires_scale=request.hires_scale, upscaler=display_name(request.upscaler))
    return dataclasses.replace(first, images=tuple(images), request=recorded, settings=settings,
                               timings=Timings(encode=encode, denoise=denoise, decode=decode), notices=tuple(job.notices))

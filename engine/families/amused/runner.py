"""The aMUSEd runner: text-to-image, img2img and inpainting from one diffusers folder
(AmusedPipeline and its img2img / inpaint siblings sharing the same modules).

The masked-token sampling is seeded by the request's seed through a CPU generator, so a request
regenerates identically. The transformer predicts VQ tokens, so the preview decodes the tokens
predicted so far through the VQ-GAN. All methods run on the engine thread.
"""

from __future__ import annotations

import time

from engine import imageprep
from engine.api import Mode, ModelInfo, Result, Timings
from engine.core import decode as core_decode
from engine.core import prompt_policy
from engine.core.job import Job
from engine.core.loading import pretrained
from engine.core.steps import StepReporter, cancel_within_steps
from engine.families.base import Capabilities, LoadContext, Runner

_CLASSES = {Mode.TXT2IMG: "AmusedPipeline", Mode.IMG2IMG: "AmusedImg2ImgPipeline", Mode.INPAINT: "AmusedInpaintPipeline"}


class AmusedRunner(Runner):
    """One loaded aMUSEd model."""

    def __init__(self, info: ModelInfo, base, caps: Capabilities, ctx: LoadContext, load_seconds: float):
        super().__init__(info, caps, ctx, load_seconds)
        self.base = base
        self._pipes = {type(base).__name__: base}
        self.placement.place_new([base], ctx.preset)

    def pipelines(self) -> list:
        return [self.base]

    def _pipe(self, mode: Mode):
        import diffusers

        name = _CLASSES[mode]
        if name not in self._pipes:
            pipe = getattr(diffusers, name).from_pipe(self.base)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[name] = pipe
        return self._pipes[name]

    def generate(self, job: Job) -> Result:
        """Run ``job`` (seed resolved). Runs on the engine thread."""
        request = job.request
        self.caps.check(request.mode)
        self.placement.ensure(request.memory_preset, [self.base])
        text = prompt_policy.prepare(request.prompt, request.negative_prompt, self.caps.group, loras=False,
                                     weighting=False, notices=job.notices)
        plan = None
        if request.mode is Mode.INPAINT:
            plan = imageprep.plan_inpaint(request)
            args = {"image": plan.work_image, "mask_image": plan.work_mask, "strength": request.strength}
        elif request.mode is Mode.IMG2IMG:
            plan = imageprep.plan_img2img(request.init_image, request.width, request.height)
            args = {"image": plan.work_image, "strength": request.strength}
        else:
            args = {"height": request.height, "width": request.width}
        t0 = time.perf_counter()
        images, seeds = self.placement.run(lambda: self._run(job, text, args, plan), [self.base], job.notices)
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.settings,
                      timings=Timings(denoise=time.perf_counter() - t0), notices=tuple(job.notices))

    def _run(self, job: Job, text, args: dict, plan):
        import torch

        request = job.request
        pipe = self._pipe(request.mode)
        images, seeds = [], []
        with torch.inference_mode():
            for index in range(request.batch_count):
                seed = job.seed(index)
                job.check_cancel(0)
                reporter = StepReporter(job, index, preview=_token_preview(pipe))
                with cancel_within_steps([pipe.transformer], reporter):
                    tokens = pipe(
                        prompt=text.prompt,
                        negative_prompt=text.negative or None,
                        num_inference_steps=request.steps,
                        guidance_scale=request.guidance_scale,
                        generator=torch.Generator("cpu").manual_seed(seed),
                        callback=reporter.legacy,
                        callback_steps=1,
                        output_type="latent",
                        **args,
                    ).images
                # The VQ tokens through the VQ-GAN with the core's guard (never a silent black image).
                vq = pipe.vqvae
                upcast = vq.dtype == torch.float16 and bool(getattr(vq.config, "force_upcast", False))
                pixels = core_decode.guarded(vq, lambda _dtype: _tokens_to_pixels(vq, tokens), job.notices,
                                             upcast=upcast)
                image = pipe.image_processor.postprocess(pixels, output_type="pil")[0]
                images.append(imageprep.finish(plan, image, request.mask_blur))  # paste back / crop back
                seeds.append(seed)
        return images, seeds


def _token_preview(pipe):
    """The VQ tokens chosen so far through the VQ-GAN (still-masked tokens shown as code 0)."""
    from engine.core.previews import pixels_to_preview

    def preview(tokens):
        return pixels_to_preview(_tokens_to_pixels(pipe.vqvae, tokens[:1]))

    return preview


def _tokens_to_pixels(vq, tokens):
    """VQ token ids (batch, h, w) through the VQ-GAN to float pixels in [-1, 1] (still-masked or
    out-of-range ids shown as code 0)."""
    codes = tokens.clamp(0, vq.config.num_vq_embeddings - 1)
    batch, h, w = codes.shape
    pixels = vq.decode(codes, force_not_quantize=True, shape=(batch, h, w, vq.config.latent_channels)).sample
    return pixels.float().clip(0, 1) * 2 - 1


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> AmusedRunner:
    """Load an aMUSEd diffusers folder (safetensors only). Runs on the engine thread."""
    import diffusers

    started = time.perf_counter()
    pipe = pretrained(diffusers.AmusedPipeline, info.path, info.name, "this aMUSEd model", dtype=ctx.dtype)
    return AmusedRunner(info, pipe, caps, ctx, time.perf_counter() - started)

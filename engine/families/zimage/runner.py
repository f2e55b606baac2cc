"""The Z-Image runner: text to image, img2img and inpaint (ZImagePipeline and its img2img / inpaint
siblings sharing one set of modules), with the core's guarantees: progress and cancel within a step,
the memory presets and the out-of-memory ladder, previews of the 16-channel latents, the decode NaN
guard. Qwen3 reads plain text: A1111 weights and LoRA tags are stripped with a notice
(``engine.core.prompt_policy``). Turbo runs without CFG whatever the request says, and records that.
Every method runs on the engine thread.
"""

from __future__ import annotations

import time

from engine import imageprep
from engine.devices import bf16_for_fp16
from engine.api import InvalidRequest, Mode, ModelInfo, Result, Timings
from engine.core import decode as core_decode
from engine.core import prompt_policy
from engine.core.job import Job
from engine.core.loading import pretrained
from engine.core.placement import place, unhook
from engine.core.previews import Previews
from engine.core.steps import StepReporter, cancel_within_steps
from engine.families.base import Capabilities, LoadContext, Runner
from engine.families.zimage.rules import SIZE_STEP, TURBO_NEGATIVE

_CLASSES = {Mode.TXT2IMG: "ZImagePipeline", Mode.IMG2IMG: "ZImageImg2ImgPipeline", Mode.INPAINT: "ZImageInpaintPipeline"}


class ZImageRunner(Runner):
    """One loaded Z-Image model (Turbo or Base)."""

    def __init__(self, info: ModelInfo, base, caps: Capabilities, ctx: LoadContext, load_seconds: float):
        super().__init__(info, caps, ctx, load_seconds)
        self.base = base
        self.pipes = {type(base).__name__: base}
        self.active = base  # the pipeline the offload hooks sit on
        self.previews = Previews(caps.latent_space, ctx.library, ctx.device, ctx.dtype)
        self.placement.place_new([base], ctx.preset)

    def pipelines(self) -> list:
        return [self.active]

    def close(self) -> None:
        super().close()
        self.pipes.clear()
        self.base = self.active = None

    def _pipeline(self, mode: Mode):
        import diffusers

        name = _CLASSES[mode]
        pipe = self.pipes.get(name)
        if pipe is None:
            pipe = self.pipes[name] = getattr(diffusers, name).from_pipe(self.base)
            pipe.set_progress_bar_config(disable=True)
        settings = self.placement.settings
        if pipe is not self.active and (settings.model_offload or settings.sequential_offload):
            unhook(self.active)
            place(pipe, settings)
        self.active = pipe
        return pipe

    def generate(self, job: Job) -> Result:
        """Run ``job`` (seed resolved). Runs on the engine thread."""
        request = job.request
        self.caps.check(request.mode)
        if request.width % SIZE_STEP or request.height % SIZE_STEP:
            raise InvalidRequest("width", f"Z-Image makes sizes in steps of {SIZE_STEP} px; "
                                 f"{request.width}x{request.height} is not one")
        if "guidance_scale" not in self.caps.parameters:  # Turbo: no CFG, and the metadata says so
            if request.negative_prompt.strip():
                job.notice(TURBO_NEGATIVE + "; it was left out.")
            request = request.replace(guidance_scale=0.0, negative_prompt="")
            job.request = request
        self.placement.ensure(request.memory_preset, [self.active])
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
            args = {}
        images, seeds, phases = self.placement.run(lambda: self._run(job, text, args, plan), lambda: [self.active],
                                                   job.notices)
        denoise_s, decode_s = phases
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.settings,
                      timings=Timings(denoise=denoise_s, decode=decode_s), notices=tuple(job.notices))

    def _run(self, job: Job, text, args: dict, plan):
        """The whole batch; returns (images, seeds, (denoise, decode) seconds)."""
        import torch

        request = job.request
        pipe = self._pipeline(request.mode)  # again: the ladder may have moved the hooks
        preview = self.previews.for_size((request.width, request.height))
        images, seeds = [], []
        denoise_s = decode_s = 0.0
        try:
            with torch.inference_mode():
                for index in range(request.batch_count):
                    seed = job.seed(index)
                    job.check_cancel(0)
                    t0 = time.perf_counter()
                    reporter = StepReporter(job, index, preview=preview)
                    with cancel_within_steps([pipe.transformer], reporter):
                        latents = pipe(
                            prompt=text.prompt,
                            negative_prompt=text.negative or None,
                            height=request.height,
                            width=request.width,
                            num_inference_steps=request.steps,
                            guidance_scale=request.guidance_scale,
                            generator=torch.Generator("cpu").manual_seed(seed),
                            output_type="latent",
                            callback_on_step_end=reporter.on_step_end,
                            **args,
                        ).images
                    denoise_s += time.perf_counter() - t0
                    job.check_cancel(reporter.total, reporter.total)

                    # Decode (never a silent black image), then paste back / crop back.
                    t0 = time.perf_counter()
                    decoded = core_decode.decode(pipe.vae, latents, job.notices)
                    image = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
                    images.append(imageprep.finish(plan, image, request.mask_blur))
                    decode_s += time.perf_counter() - t0
                    seeds.append(seed)
        finally:
            pipe.maybe_free_model_hooks()
        return images, seeds, (denoise_s, decode_s)


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> ZImageRunner:
    """Load a Z-Image diffusers folder (safetensors only, offline). Runs on the engine thread."""
    import dataclasses

    import diffusers

    ctx = dataclasses.replace(ctx, dtype=bf16_for_fp16(ctx.device, ctx.dtype))  # fp16 overflows
    started = time.perf_counter()
    pipe = pretrained(diffusers.ZImagePipeline, info.path, info.name, "this Z-Image model", dtype=ctx.dtype)
    return ZImageRunner(info, pipe, caps, ctx, time.perf_counter() - started)

"""The Qwen-Image runner: text to image, img2img and inpaint (QwenImagePipeline and its img2img /
inpaint siblings sharing one set of modules), with the core's guarantees: progress and cancel within
a step, the memory presets and the out-of-memory ladder, previews of the packed latents, the decode
NaN guard. CFG is Qwen-Image's "true CFG" (a second pass with the negative prompt, an empty one when
none is given). Qwen2.5-VL reads plain text: A1111 weights and LoRA tags are stripped with a notice.
Every method runs on the engine thread.
"""

from __future__ import annotations

import time

from engine import imageprep
from engine.api import InvalidRequest, Mode, ModelInfo, Result, Timings
from engine.core import decode as core_decode
from engine.core import prompt_policy
from engine.core.job import Job
from engine.core.loading import pretrained
from engine.core.placement import place, unhook
from engine.core.previews import latents_to_preview
from engine.core.steps import StepReporter, cancel_within_steps
from engine.devices import bf16_for_fp16
from engine.families.base import Capabilities, LoadContext, Runner
from engine.families.qwen_image.rules import SIZE_STEP

_CLASSES = {Mode.TXT2IMG: "QwenImagePipeline", Mode.IMG2IMG: "QwenImageImg2ImgPipeline",
            Mode.INPAINT: "QwenImageInpaintPipeline"}


class QwenImageRunner(Runner):
    """One loaded Qwen-Image model."""

    def __init__(self, info: ModelInfo, base, caps: Capabilities, ctx: LoadContext, load_seconds: float):
        super().__init__(info, caps, ctx, load_seconds)
        self.base = base
        self.pipes = {type(base).__name__: base}
        self.active = base  # the pipeline the offload hooks sit on
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
            raise InvalidRequest("width", f"Qwen-Image makes sizes in steps of {SIZE_STEP} px; "
                                 f"{request.width}x{request.height} is not one")
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
        size = (request.width, request.height)
        cfg = request.guidance_scale > 1.0
        images, seeds = [], []
        denoise_s = decode_s = 0.0
        try:
            with torch.inference_mode():
                for index in range(request.batch_count):
                    seed = job.seed(index)
                    job.check_cancel(0)
                    t0 = time.perf_counter()
                    reporter = StepReporter(job, index, preview=lambda packed: latents_to_preview(
                        _unpack(pipe, packed, size), self.caps.latent_space, size))
                    with cancel_within_steps([pipe.transformer], reporter):
                        packed = pipe(
                            prompt=text.prompt,
                            # True CFG runs only with a negative prompt; an empty one is " " (the card's advice).
                            negative_prompt=(text.negative or " ") if cfg else None,
                            true_cfg_scale=request.guidance_scale,
                            height=request.height,
                            width=request.width,
                            num_inference_steps=request.steps,
                            generator=torch.Generator("cpu").manual_seed(seed),
                            output_type="latent",
                            callback_on_step_end=reporter.on_step_end,
                            **args,
                        ).images
                    denoise_s += time.perf_counter() - t0
                    job.check_cancel(reporter.total, reporter.total)

                    # Decode the one frame of the video VAE (never a silent black image), then paste back.
                    t0 = time.perf_counter()
                    decoded = core_decode.decode(pipe.vae, _unpack(pipe, packed, size), job.notices)[:, :, 0]
                    image = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
                    images.append(imageprep.finish(plan, image, request.mask_blur))
                    decode_s += time.perf_counter() - t0
                    seeds.append(seed)
        finally:
            pipe.maybe_free_model_hooks()
        return images, seeds, (denoise_s, decode_s)


def _unpack(pipe, packed, size: tuple[int, int]):
    """The transformer's 2x2-packed tokens (B, N, 64) as the VAE's (B, 16, 1, H, W) latents."""
    width, height = size
    return pipe._unpack_latents(packed, height, width, pipe.vae_scale_factor)


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> QwenImageRunner:
    """Load a Qwen-Image diffusers folder (safetensors only, offline). Runs on the engine thread."""
    import dataclasses

    import diffusers

    ctx = dataclasses.replace(ctx, dtype=bf16_for_fp16(ctx.device, ctx.dtype))  # fp16 overflows
    started = time.perf_counter()
    pipe = pretrained(diffusers.QwenImagePipeline, info.path, info.name, "this Qwen-Image model", dtype=ctx.dtype)
    return QwenImageRunner(info, pipe, caps, ctx, time.perf_counter() - started)

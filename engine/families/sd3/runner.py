"""The SD 3.5 runner: StableDiffusion3Pipeline and its img2img / inpaint siblings sharing one set of
modules (no copy, no reload), from a diffusers folder or an all-in-one single file.

The core's guarantees: a Progress event per step and a cancel within a step (``engine.core.steps``),
the presets and out-of-memory ladder (``Placement``), a live preview from the 16-channel latents
(``engine.core.previews``, space "sd3"), the decode NaN guard (``engine.core.decode``) and the prompt
policy: CLIP and T5 take plain text, so A1111 weights are stripped with a notice. Without its T5
encoder (a folder that has none) the model runs on the two CLIP encoders, said in one notice.
Every method runs on the engine thread.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from engine import imageprep
from engine.api import Mode, ModelInfo, Result, Timings
from engine.core import decode as core_decode
from engine.core import prompt_policy
from engine.core.job import Job
from engine.core.placement import place, unhook
from engine.core.previews import Previews
from engine.core.steps import StepReporter, cancel_within_steps
from engine.families.base import Capabilities, LoadContext, Runner
from engine.devices import bf16_for_fp16

_CLASSES = {Mode.TXT2IMG: "StableDiffusion3Pipeline", Mode.IMG2IMG: "StableDiffusion3Img2ImgPipeline",
            Mode.INPAINT: "StableDiffusion3InpaintPipeline"}
NO_T5 = ("This SD 3.5 model has no T5 text encoder: prompts are read by its two CLIP encoders only "
         "(77 tokens; long or detailed prompts are followed less closely).")
TURBO_CFG = "SD 3.5 Large Turbo runs without CFG: the CFG scale and negative prompt were left out."


class SD3Runner(Runner):
    """One loaded SD 3.5 model."""

    def __init__(self, info: ModelInfo, base, caps: Capabilities, ctx: LoadContext, load_seconds: float,
                 notices: tuple[str, ...] = ()):
        super().__init__(info, caps, ctx, load_seconds)
        self.base = base
        self.active = base  # the pipeline offload hooks are installed on
        self._pipes = {type(base).__name__: base}
        self.load_notices = notices
        self.previews = Previews(caps.latent_space, ctx.library, ctx.device, ctx.dtype)
        self.placement.place_new([base], ctx.preset)

    def pipelines(self) -> list:
        return [self.active]

    def close(self) -> None:
        super().close()
        self._pipes.clear()
        self.base = self.active = None

    def _pipe(self, mode: Mode):
        import diffusers

        name = _CLASSES[mode]
        pipe = self._pipes.get(name)
        if pipe is None:
            pipe = self._pipes[name] = getattr(diffusers, name).from_pipe(self.base)
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
        if "guidance_scale" not in self.caps.parameters and (request.guidance_scale or request.negative_prompt):
            request = request.replace(guidance_scale=0.0, negative_prompt="")
            job.notice(TURBO_CFG)
        self.placement.ensure(request.memory_preset, [self.active])
        pipe = self._pipe(request.mode)
        for notice in self.load_notices:
            job.notice(notice)
        if pipe.text_encoder_3 is None:
            job.notice(NO_T5)
        text = prompt_policy.prepare(request.prompt, request.negative_prompt, self.caps.group, loras=False,
                                     weighting=False, notices=job.notices)
        # The transformer works on 16 px (2x2 patches of 8x latents): other sizes are generated padded
        # with their edge pixels to the next multiple of 16 and cropped back, never stretched.
        step = self.caps.size_step
        grid = (-(-request.width // step) * step, -(-request.height // step) * step)
        plan = None
        if request.mode is Mode.INPAINT:
            plan = imageprep.plan_inpaint(request)
            args = {"image": imageprep.pad_edges(plan.work_image, grid),
                    "mask_image": imageprep.pad_edges(plan.work_mask, grid), "strength": request.strength}
        elif request.mode is Mode.IMG2IMG:
            plan = imageprep.plan_img2img(request.init_image, request.width, request.height)
            args = {"image": imageprep.pad_edges(plan.work_image, grid), "strength": request.strength}
        else:
            args = {}
        args.update(width=grid[0], height=grid[1])
        images, seeds, phases = self.placement.run(lambda: self._run(job, request, text, args, plan),
                                                   lambda: [self.active], job.notices)
        denoise_s, decode_s = phases
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.settings,
                      timings=Timings(denoise=denoise_s, decode=decode_s), notices=tuple(job.notices))

    def _run(self, job: Job, request, text, args: dict, plan):
        import torch

        pipe = self._pipe(request.mode)  # again: the ladder may have moved the hooks
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
                            num_inference_steps=request.steps,
                            guidance_scale=request.guidance_scale,
                            generator=torch.Generator("cpu").manual_seed(seed),
                            output_type="latent",
                            callback_on_step_end=reporter.on_step_end,
                            **args,
                        ).images
                    denoise_s += time.perf_counter() - t0
                    job.check_cancel(reporter.total, reporter.total)
                    t0 = time.perf_counter()
                    image = self._decode(pipe, latents, job.notices).crop((0, 0, request.width, request.height))
                    images.append(imageprep.finish(plan, image, request.mask_blur))  # paste back / crop back
                    decode_s += time.perf_counter() - t0
                    seeds.append(seed)
        finally:
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()
        return images, seeds, (denoise_s, decode_s)

    def _decode(self, pipe, latents, notices: list[str]):
        decoded = core_decode.decode(pipe.vae, latents, notices)  # the core undoes SD3's scale and shift
        return pipe.image_processor.postprocess(decoded, output_type="pil")[0]


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> SD3Runner:
    """Load an SD 3.5 diffusers folder or all-in-one file (safetensors only, offline). Engine thread."""
    import diffusers

    from engine.core.loading import pretrained

    ctx = dataclasses.replace(ctx, dtype=bf16_for_fp16(ctx.device, ctx.dtype))
    started = time.perf_counter()
    notices: tuple[str, ...] = ()
    if info.format == "diffusers":
        from engine.files.folders import listed, read_json

        # A folder saved without T5 lists text_encoder_3 as null: diffusers needs to be told it is absent.
        absent = {} if listed(read_json(Path(info.path), "model_index.json"), "text_encoder_3") else \
            {"text_encoder_3": None, "tokenizer_3": None}
        pipe = pretrained(diffusers.StableDiffusion3Pipeline, info.path, info.name, "this SD 3.5 model",
                          dtype=ctx.dtype, **absent)
    else:
        from engine.families.sd3.singlefile import load_single_file

        pipe, notices = load_single_file(info, ctx.dtype)
    return SD3Runner(info, pipe, caps, ctx, time.perf_counter() - started, notices)

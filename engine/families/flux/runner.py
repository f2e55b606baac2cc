"""The FLUX.1 runner: text to image, img2img and inpainting through FluxPipeline /
FluxImg2ImgPipeline / FluxInpaintPipeline, all sharing one set of modules (no copy, no reload).

The prompt is encoded once per job (T5 + CLIP-L); each image of a batch is denoised to packed
latents, unpacked and decoded through the core's guarded decode. Prompt weighting and LoRA tags
are stripped with a notice (T5 takes plain text). Sizes off the 16 px grid FLUX works on are made
at the next size up on that grid and cropped (txt2img) or resized back. Every method runs on the
engine thread.
"""

from __future__ import annotations

import dataclasses
import time

from engine import imageprep
from engine.api import ModelError, Mode, ModelInfo, Result, Timings
from engine.core import decode as core_decode
from engine.core import prompt_policy
from engine.core.job import Job
from engine.core.loading import LOAD_ERRORS, load_failed, pretrained, quiet_libraries
from engine.core.placement import place, unhook
from engine.core.previews import Previews, unpack_2x2
from engine.core.steps import StepReporter, cancel_within_steps
from engine.families.base import Capabilities, LoadContext, Runner
from engine.devices import bf16_for_fp16

# variant -> mode -> the pipeline class that runs it (all share the loaded modules)
_CLASSES = {
    "": {Mode.TXT2IMG: "FluxPipeline", Mode.IMG2IMG: "FluxImg2ImgPipeline", Mode.INPAINT: "FluxInpaintPipeline"},
    "fill": {Mode.INPAINT: "FluxFillPipeline"},
    "kontext": {Mode.TXT2IMG: "FluxKontextPipeline", Mode.IMG2IMG: "FluxKontextPipeline",
                Mode.INPAINT: "FluxKontextInpaintPipeline"},
}
GRID = 16  # the VAE's 8x times the transformer's 2x2 patches
# T5 tokens each variant was trained with (the pipelines' own defaults for the released models).
MAX_T5_TOKENS = {"dev": 512, "schnell": 256}


def on_grid(width: int, height: int) -> tuple[int, int]:
    """The size FLUX makes for a request of ``width`` x ``height``: each side rounded up to 16 px."""
    return -(-width // GRID) * GRID, -(-height // GRID) * GRID


class FluxRunner(Runner):
    """One loaded FLUX.1 model."""

    def __init__(self, info: ModelInfo, base, caps: Capabilities, ctx: LoadContext, load_seconds: float):
        super().__init__(info, caps, ctx, load_seconds)
        self.base = base
        self.pipes = {type(base).__name__: base}
        self.active = base  # the pipeline offload hooks are installed on
        self.previews = Previews(caps.latent_space, ctx.library, ctx.device, ctx.dtype)
        self.placement.place_new([base], ctx.preset)

    def pipelines(self) -> list:
        return [self.active]

    def unpark(self, preset: str) -> None:
        self.placement.unpark([self.active], preset)

    def close(self) -> None:
        super().close()
        self.pipes.clear()
        self.base = self.active = None

    def _pipeline(self, mode: Mode):
        import diffusers

        name = _CLASSES.get(self.info.variant, _CLASSES[""])[mode]
        pipe = self.pipes.get(name)
        if pipe is None:
            pipe = self.pipes[name] = _sibling(getattr(diffusers, name), self.base)
            pipe.set_progress_bar_config(disable=True)
        settings = self.placement.settings
        if pipe is not self.active and (settings.model_offload or settings.sequential_offload):
            unhook(self.active)
            place(pipe, settings)
        self.active = pipe
        return pipe

    def generate(self, job: Job) -> Result:
        """Run ``job`` (seed resolved) with the core's ladder, decode guard, previews and cancel."""
        request = job.request
        self.caps.check(request.mode)
        self.placement.ensure(request.memory_preset, [self.active])
        text = prompt_policy.prepare(request.prompt, request.negative_prompt, self.caps.label, loras=False,
                                     weighting=False, notices=job.notices)
        if text.negative.strip():
            job.notice(f"{self.caps.label} takes no negative prompt; it was left out.")
        size = on_grid(request.width, request.height)
        if size != (request.width, request.height):
            job.notice(f"FLUX makes sizes on a 16 px grid: made at {size[0]}×{size[1]} and brought back to "
                       f"{request.width}×{request.height}.")
        args, plan = self._image_args(request, size)
        if self.info.variant == "kontext":  # at the asked size, not Kontext's own preferred resolutions
            args.update(max_area=size[0] * size[1], _auto_resize=False)
        images, seeds, phases = self.placement.run(lambda: self._run(job, text.prompt, args, plan, size),
                                                   lambda: [self.active], job.notices)
        encode_s, denoise_s, decode_s = phases
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.settings,
                      timings=Timings(encode=encode_s, denoise=denoise_s, decode=decode_s), notices=tuple(job.notices))

    def _image_args(self, request, size):
        from PIL import Image

        if request.mode is Mode.INPAINT:
            plan = imageprep.plan_inpaint(request)
            image, mask = plan.work_image, plan.work_mask
            if image.size != size:
                image, mask = image.resize(size, Image.LANCZOS), mask.resize(size, Image.NEAREST)
            return {"image": image, "mask_image": mask, "strength": request.strength}, plan
        if request.mode is Mode.IMG2IMG:
            plan = imageprep.plan_img2img(request.init_image, request.width, request.height)
            image = plan.work_image if plan.work_image.size == size else plan.work_image.resize(size, Image.LANCZOS)
            if self.info.variant == "kontext":  # an edit by instruction: the whole image is the context
                return {"image": image}, plan
            return {"image": image, "strength": request.strength}, plan
        return {}, None

    def _run(self, job: Job, prompt: str, args: dict, plan, size):
        import torch

        request = job.request
        pipe = self._pipeline(request.mode)  # again: the ladder may have moved the hooks
        width, height = size
        tokens = min(MAX_T5_TOKENS.get(self.info.variant, 512), pipe.tokenizer_2.model_max_length)
        encode_s = denoise_s = decode_s = 0.0
        images, seeds = [], []
        preview = self.previews.for_size(size)
        try:
            with torch.inference_mode():
                # Prompt embeddings (T5 sequence + CLIP pooled), once for the whole batch.
                t0 = time.perf_counter()
                embeds, pooled, _text_ids = pipe.encode_prompt(prompt=prompt, prompt_2=None,
                                                               device=pipe._execution_device,
                                                               max_sequence_length=tokens)
                encode_s += time.perf_counter() - t0
                for index in range(request.batch_count):
                    seed = job.seed(index)
                    job.check_cancel(0)
                    # Denoising loop (inside diffusers): progress + preview + cancel per step and per block.
                    t0 = time.perf_counter()
                    reporter = StepReporter(job, index, preview=preview)
                    with cancel_within_steps([pipe.transformer], reporter):
                        latents = pipe(
                            prompt_embeds=embeds, pooled_prompt_embeds=pooled, **args,
                            width=width, height=height, num_inference_steps=request.steps,
                            guidance_scale=request.guidance_scale, max_sequence_length=tokens,
                            generator=torch.Generator("cpu").manual_seed(seed), output_type="latent",
                            callback_on_step_end=reporter.on_step_end,
                        ).images
                    denoise_s += time.perf_counter() - t0
                    job.check_cancel(reporter.total, reporter.total)

                    # Decode (never a silent black image), back to the asked size, paste back.
                    t0 = time.perf_counter()
                    decoded = core_decode.decode(pipe.vae, unpack_2x2(latents, width, height), job.notices)
                    image = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
                    image = _to_request_size(image, request, plan)
                    images.append(imageprep.finish(plan, image, request.mask_blur))
                    decode_s += time.perf_counter() - t0
                    seeds.append(seed)
        finally:
            pipe.maybe_free_model_hooks()
        return images, seeds, (encode_s, denoise_s, decode_s)


def _sibling(cls, base):
    """A ``cls`` pipeline on ``base``'s very modules. Not ``from_pipe``: that casts every module to one
    dtype, which a GGUF-quantized transformer refuses."""
    import inspect

    wanted = inspect.signature(cls.__init__).parameters
    return cls(**{name: module for name, module in base.components.items() if name in wanted})


def _to_request_size(image, request, plan):
    """An image made on the 16 px grid back at the request's size: cropped for a new image (nothing
    stretched), resized where it stands for an input image of that size."""
    from PIL import Image

    want = (request.width, request.height)
    if image.size == want:
        return image
    if plan is None:
        return image.crop((0, 0, *want))
    return image.resize(want, Image.LANCZOS)


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> FluxRunner:
    """Load a FLUX.1 diffusers folder or split-layout transformer file (safetensors only, offline)
    and place it. Engine thread."""
    import diffusers

    started = time.perf_counter()
    dtype = bf16_for_fp16(ctx.device, ctx.dtype)
    ctx = dataclasses.replace(ctx, dtype=dtype)  # what the placement, previews and metadata say it runs in
    if info.format == "diffusers":
        pipe = pretrained(diffusers.FluxPipeline, info.path, info.name, "this FLUX.1 model", dtype=dtype)
    else:  # a transformer file of ComfyUI's split layout, with its parts beside it
        from engine.families.flux import singlefile

        quiet_libraries()
        try:
            transformer = None
            if info.format == "gguf":  # quantized weights stay quantized; each layer computes in ``dtype``
                from diffusers import GGUFQuantizationConfig

                transformer = singlefile.load_transformer(info.path, info.variant or "dev", dtype,
                                                          GGUFQuantizationConfig(compute_dtype=dtype))
            pipe = singlefile.load_split(info, dtype, transformer)
        except ModelError:
            raise
        except LOAD_ERRORS as exc:
            raise load_failed(info.name, "this FLUX.1 model", exc) from exc
        pipe.set_progress_bar_config(disable=True)
    return FluxRunner(info, pipe, caps, ctx, time.perf_counter() - started)



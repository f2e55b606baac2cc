"""The runner most families are: sibling diffusers pipelines (text to image, img2img, inpaint) on one
set of modules, run with every guarantee of the core. A family subclasses ``PipelineRunner``, names
its pipeline classes, and overrides only what differs (its call arguments, how its latents reach the
VAE, its request rules); the batch loop, sizes off the grid, progress, cancel within a step, the
memory presets and out-of-memory ladder, previews, the decode guard, ``<lora:…>`` LoRAs (for a
family whose capabilities declare the "lora" add-on; ``engine.core.loras``) and control inputs (for a
family whose capabilities declare ``control_kinds``; ``engine.core.control``) are written here once.

Any family may use it (it is part of the interface, like ``engine.families.base``). Engine thread.
"""

from __future__ import annotations

import time
from typing import Any

from engine import imageprep
from engine.api import Mode, Result, Timings
from engine.core import decode as core_decode
from engine.core import control, loras, noise, prompt_policy, regions
from engine.core.job import Job
from engine.core.previews import Previews
from engine.core.prompt_cache import modules_key
from engine.core.steps import StepReporter, cancel_within_steps
from engine.families.base import Runner


def on_grid(width: int, height: int, step: int) -> tuple[int, int]:
    """The size a model on a ``step`` px grid makes for a request of ``width`` x ``height``: each
    side rounded up to the grid."""
    return -(-width // step) * step, -(-height // step) * step


def sibling(cls, base, **extra):
    """A ``cls`` pipeline on ``base``'s very modules (and ``extra`` ones: a control model). Not
    ``from_pipe``: that casts every module to one dtype, which a GGUF-quantized transformer refuses."""
    import inspect

    wanted = inspect.signature(cls.__init__).parameters
    components = base.components
    # The base's registered settings too (FLUX.2 [klein]'s ``is_distilled``): a sibling runs the same model.
    settings = {name: base.config[name] for name in wanted if name in base.config and name not in components}
    modules = {name: module for name, module in components.items() if name in wanted and name not in extra}
    pipe = cls(**modules, **extra, **settings)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class PipelineRunner(Runner):
    """One loaded model whose modes are sibling pipelines. Subclasses set ``classes`` (mode ->
    diffusers pipeline class name) and may override ``pipeline_classes``, ``prepare``,
    ``image_args``, ``call_args``, ``to_vae``, ``preview_for`` and ``result_params``."""

    classes: dict[Mode, str] = {}
    denoiser = "transformer"  # the pipeline attribute the in-step cancel hooks go on
    unscale = True  # False: the pipeline's latent output is already in the VAE's space (FLUX.2 [klein])

    def __init__(self, info, base, caps, ctx, load_seconds: float):
        super().__init__(info, caps, ctx, load_seconds)
        self.base = base
        self.pipes = {type(base).__name__: base}
        self.active = base  # the pipeline the offload hooks sit on
        self.previews = Previews(caps.latent_space, ctx.library, ctx.device, ctx.dtype)
        self.library, self.hasher = ctx.library, ctx.hasher
        self.loras = loras.Loras()  # the LoRAs loaded into this model (families declaring the "lora" add-on)
        self._text_addons: tuple = ()  # (path, weight) of the LoRAs applied for the current prompt
        self.controls = control.ControlModels(ctx.library, ctx.hasher, ctx.dtype)  # kept between jobs
        self.placement.place_new([base], ctx.preset)

    def pipelines(self) -> list:
        return [self.active]

    def park(self) -> None:
        super().park()
        self.placement.park([n.model for n in self.controls.loaded.values()])  # idle control models too

    def nbytes(self) -> int:
        nets = [n.model for n in self.controls.loaded.values() if n.model is not getattr(self.active, "controlnet", None)]
        return super().nbytes() + sum(p.numel() * p.element_size() for m in nets for p in m.parameters())

    def unpark(self, preset: str) -> None:
        self.placement.unpark([self.active], preset)

    def close(self) -> None:
        super().close()
        self.pipes.clear()
        self.controls.clear()
        self.base = self.active = None

    # -- what a family may change ---------------------------------------------------------------

    def pipeline_classes(self) -> dict[Mode, str]:
        """Mode -> pipeline class name for this model (a variant may have its own)."""
        return self.classes

    def prepare(self, job: Job):
        """The request as this model runs it (a family's rules: Turbo without CFG, …); may add
        notices and replace ``job.request``. Default: as asked."""
        return job.request

    def image_args(self, request, size: tuple[int, int]) -> tuple[dict, Any]:
        """Pipeline arguments for the request's input image(s) at the working ``size`` (padded with
        their edge pixels to the grid, never stretched), and the ``imageprep`` plan that brings the
        output back (None for text to image)."""
        if request.mode is Mode.INPAINT:
            plan = imageprep.plan_inpaint(request)
            return {"image": imageprep.pad_edges(plan.work_image, size),
                    "mask_image": imageprep.pad_edges(plan.work_mask, size), "strength": request.strength}, plan
        if request.mode is Mode.IMG2IMG:
            plan = imageprep.plan_img2img(request.init_image, request.width, request.height)
            return {"image": imageprep.pad_edges(plan.work_image, size), "strength": request.strength}, plan
        return {}, None

    def encode(self, pipe, text, request) -> dict:
        """Prompt arguments for every image of the batch, encoded once (default: the text itself;
        the pipeline encodes it on each call)."""
        return {"prompt": text.prompt, "negative_prompt": text.negative or None}

    def encode_key(self, pipe, text, request):
        """What ``encode``'s result depends on, for the runner's prompt cache (engine.core.prompt_cache):
        unchanged, the last encoding is used again. Default: the text as the encoder sees it, clip skip,
        the CFG scale (an encode may give a negative only with CFG), the text-encoding modules and the
        device and preset they sit on. A family whose encode reads more of the request adds it here."""
        encoders = [m for name, m in pipe.components.items() if name.startswith(("text_encoder", "tokenizer"))]
        settings = self.placement.settings
        return (text.prompt, text.negative, request.clip_skip, request.guidance_scale, modules_key(*encoders),
                self._text_addons, str(settings.device), settings.preset, text.regions)

    def call_args(self, request) -> dict:
        """The per-call arguments beyond prompt, images, size, steps and seed (default: the CFG scale)."""
        return {"guidance_scale": request.guidance_scale}

    def to_vae(self, pipe, latents, size: tuple[int, int]):
        """The pipeline's latent output as the VAE decodes it (default: as it is)."""
        return latents

    def from_vae(self, decoded):
        """The VAE's decoded tensor as NCHW pixels (a video VAE's one frame is taken here)."""
        return decoded

    def preview_for(self, pipe, size: tuple[int, int]):
        """``latents -> PIL image`` for a progress preview."""
        return self.previews.for_size(size)

    def result_params(self, request) -> tuple[tuple[str, str], ...]:
        return ()

    def reference_args(self, pipe, prompt_args: dict, request) -> dict:
        """The prompt arguments with the request's reference images added (default: as they are; FLUX.1
        appends its Redux tokens). After the prompt cache: the cached encoding is never changed."""
        return prompt_args

    def lora_source(self, path: str):
        """What ``load_lora_weights`` is given for the LoRA file ``path`` (default: the path itself;
        diffusers converts the layouts it knows)."""
        return path

    # -- the one way every such family runs -------------------------------------------------------

    def pipeline(self, mode: Mode, controls=()):
        """The sibling pipeline for ``mode``, made on first use, with the offload hooks moved onto it;
        with control inputs, its ControlNet pipeline on the same modules (``engine.core.control``)."""
        import diffusers

        name = self.pipeline_classes()[mode]
        pipe = self.pipes.get(name)
        if pipe is None:
            pipe = self.pipes[name] = sibling(getattr(diffusers, name), self.base)
        nets = self.loaded_controls(controls) if controls else []
        return control.switch(self, name, pipe, nets, label=self.caps.label,
                              build=lambda cls, net: sibling(cls, self.base, controlnet=net))

    def loaded_controls(self, controls) -> list:
        """Each control's model, loaded (kept between jobs) and checked against this model's transformer."""
        return [self.controls.get(c, self.info, getattr(self.base, self.denoiser)) for c in controls]

    def generate(self, job: Job) -> Result:
        """Run ``job`` (seed resolved) with the core's ladder, decode guard, previews and cancel."""
        self.caps.check(job.request.mode)
        request = self.prepare(job)
        if "negative_prompt" not in self.caps.parameters and request.negative_prompt.strip():
            job.notice(f"{self.caps.label} takes no negative prompt; it was left out.")
            request = request.replace(negative_prompt="")
        job.request = request
        self.placement.ensure(request.memory_preset, [self.active])
        takes_loras = "lora" in self.caps.addons
        text = prompt_policy.prepare(request.prompt, request.negative_prompt, self.caps.group, loras=takes_loras,
                                     weighting=False, notices=job.notices,
                                     regions=tuple(r.prompt for r in regions.active(request.regions)))
        lora_params = self._apply_loras(text, job) if takes_loras else []
        size = on_grid(request.width, request.height, self.caps.size_step)
        if size != (request.width, request.height):
            job.notice(f"{self.caps.group} makes sizes on a {self.caps.size_step} px grid: made at {size[0]}×{size[1]} "
                       f"and cropped to {request.width}×{request.height}.")
        args, plan = self.image_args(request, size)
        control_params: list = []
        controls = control.active(request.controls)
        if controls:  # control images, scales, step ranges (and Union modes), at the working size
            control.check(self.caps, request.controls)
            pipe = self.pipeline(request.mode, controls)
            args = control.call_args(args, controls, size, plan, pipe=pipe, loaded=self.loaded_controls(controls))
            args.pop("width"), args.pop("height")  # the call gives the working size itself
            if "strength" in args and not control.takes(pipe, "strength"):  # Z-Image's control inpaint
                if request.strength < 1:
                    job.notice(f"{self.caps.label} repaints the masked region from noise when a control steers it: "
                               "made at strength 1.")
                args.pop("strength")
                request = job.request = request.replace(strength=1.0)
        if request.controls:  # what the metadata records of them (all, also those acting on no step)
            request = job.request = control.record(request, self.loaded_controls(request.controls), control_params,
                                                   job.notice)
        images, seeds, phases = self.placement.run(lambda: self._run(job, text, args, plan, size),
                                                   lambda: [self.active], job.notices)
        encode_s, denoise_s, decode_s = phases
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.settings,
                      params=tuple(self.result_params(request)) + tuple(lora_params) + tuple(control_params)
                      + tuple(regions.params(request.regions)),
                      timings=Timings(encode=encode_s, denoise=denoise_s, decode=decode_s), notices=tuple(job.notices))

    def _apply_loras(self, text, job: Job) -> list[tuple[str, str]]:
        """Switch the model to exactly the prompt's LoRAs (``engine.core.loras``); their metadata pairs."""
        from engine.families import family_label

        applied = self.loras.apply(self.pipeline(job.request.mode), self.info, self.caps.short,
                                   loras.wanted(self.library, text.loras, self.info.family), job.notices,
                                   hasher=self.hasher, family_label=family_label, source=self.lora_source)
        # A LoRA may change the text encoder too (FLUX's CLIP-L layers): part of the prompt cache's key.
        self._text_addons = tuple((a.path, a.weight) for a in applied)
        return loras.params(applied)

    def _run(self, job: Job, text, args: dict, plan, size: tuple[int, int]):
        """The whole batch; returns (images, seeds, (encode, denoise, decode) seconds)."""
        import torch

        request = job.request
        controls = control.active(request.controls)
        pipe = self.pipeline(request.mode, controls)  # again: the ladder may have moved the hooks
        width, height = size
        preview = self.preview_for(pipe, size)
        images, seeds = [], []
        encode_s = denoise_s = decode_s = 0.0
        try:
            with torch.inference_mode():
                t0 = time.perf_counter()
                prompt_args = self.prompt_cache.get(self.encode_key(pipe, text, request),
                                                    lambda: self.encode(pipe, text, request))
                prompt_args = self.reference_args(pipe, prompt_args, request)
                encode_s += time.perf_counter() - t0
                for index in range(request.batch_count):
                    seed = job.seed(index)
                    job.check_cancel(0)
                    # The denoising loop (inside diffusers): progress + preview + cancel per step and per block.
                    t0 = time.perf_counter()
                    reporter = StepReporter(job, index, preview=preview)
                    with cancel_within_steps(control.denoisers(pipe, self.denoiser), reporter), \
                            control.step_range(pipe, controls), noise.drawn_from(job):
                        latents = pipe(
                            **prompt_args, **args, **self.call_args(request), width=width, height=height,
                            num_inference_steps=request.steps, generator=torch.Generator("cpu").manual_seed(seed),
                            output_type="latent", callback_on_step_end=reporter.on_step_end,
                        ).images
                    denoise_s += time.perf_counter() - t0
                    job.check_cancel(reporter.total, reporter.total)

                    # Decode (never a silent black image), back to the asked size, paste back / crop back.
                    t0 = time.perf_counter()
                    decoded = self.from_vae(core_decode.decode(pipe.vae, self.to_vae(pipe, latents, size), job.notices,
                                                                 unscale=self.unscale))
                    image = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
                    image = image.crop((0, 0, request.width, request.height))  # the grid's padding off
                    images.append(imageprep.finish(plan, image, request.mask_blur))
                    decode_s += time.perf_counter() - t0
                    seeds.append(seed)
        finally:
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()
        return images, seeds, (encode_s, denoise_s, decode_s)


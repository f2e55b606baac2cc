"""The Stable Diffusion runner: SD 1.x, 2.x and SDXL UNet pipelines (base, inpainting, Turbo).

One loaded model keeps a pipeline per mode class, all sharing the base pipeline's modules (no copy,
no reload). Offload hooks belong to one pipeline object, so they move to whichever pipeline is
about to run. Prompts are A1111 syntax weighted by compel, with LoRAs, embeddings and a replacement
VAE from the library. Every method runs on the engine thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

from engine import imageprep, prompts
from engine.api import GenerationRequest, Mode, ModelInfo, Result, Timings
from engine.core import decode as core_decode
from engine.core import control, loras, noise, prompt_policy, reference, regions, speed
from engine.core.job import Job
from engine.core.previews import Previews
from engine.core.prompt_cache import modules_key
from engine.core.steps import StepReporter, cancel_within_steps
from engine.families import family_label
from engine.families.base import Capabilities, LoadContext, Runner
from engine.families.sd import loading
from engine.families.sd.addons import Addons
from engine.samplers import make_scheduler


TEXT_MODULES = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")


class SDRunner(Runner):
    """One loaded SD 1.x / 2.x / SDXL model."""

    def __init__(self, info: ModelInfo, base, caps: Capabilities, ctx: LoadContext, load_seconds: float):
        super().__init__(info, caps, ctx, load_seconds)
        self.base = base
        self.library = ctx.library
        self.hasher = ctx.hasher
        self.device = ctx.device
        self.state_dir = ctx.state_dir
        self.dtype = ctx.dtype
        self.scheduler_config = dict(base.scheduler.config)
        self.pipes = {type(base): base}  # pipeline class (or (class, control model paths)) -> pipeline sharing base's modules
        self.controls = control.ControlModels(ctx.library, ctx.hasher, ctx.dtype)
        self.references = reference.References(ctx.library, ctx.hasher, ctx.dtype)  # IP-Adapters, only while used
        self.active = base  # the pipeline offload hooks are installed on
        self.addons = Addons()
        self.previews = Previews(caps.latent_space, ctx.library, ctx.device, ctx.dtype)
        self.placement.place_new([base], ctx.preset)

    def pipelines(self) -> list:
        return [self.active]

    def park(self) -> None:
        super().park()
        self.placement.park([n.model for n in self.controls.loaded.values()])  # idle control models too
        self.references.park()

    def nbytes(self) -> int:
        nets = [n.model for n in self.controls.loaded.values() if n.model is not getattr(self.active, "controlnet", None)]
        return (super().nbytes() + sum(p.numel() * p.element_size() for m in nets for p in m.parameters())
                + self.references.nbytes())

    def close(self) -> None:
        super().close()
        self.pipes.clear()
        self.controls.clear()
        self.references.clear()
        self.base = self.active = None

    def unpark(self, preset: str) -> None:
        self.placement.unpark([self.active], preset)

    # ------------------------------------------------------------------ pipelines

    def _pipeline(self, mode: Mode, controls=()):
        """The pipeline for ``mode``; with control inputs, its ControlNet pipeline (engine.core.control)."""
        cls = loading.pipeline_class_for(self.info, mode)
        pipe = self.pipes.get(cls)
        if pipe is None:
            pipe = self.pipes[cls] = loading.derived_pipeline(self.base, self.info, mode)
        return control.switch(self, cls, pipe, self._loaded_controls(controls) if controls else [])

    def _loaded_controls(self, controls) -> list:
        """Each control's model, loaded (kept between jobs) and checked against this model (engine.core.control)."""
        return [self.controls.get(c, self.info, self.base.unet) for c in controls]

    # ------------------------------------------------------------------ generation

    def generate(self, job: Job) -> Result:
        """Run ``job`` (seed resolved); the ladder, decode guard, previews and cancel from the core."""
        request = job.request
        self.caps.check(request.mode)
        control.check(self.caps, request.controls)
        self.placement.ensure(request.memory_preset, [self.active])
        pipe = self._pipeline(request.mode, control.active(request.controls))

        # Add-ons the prompt names (LoRAs, embeddings) and the VAE; what the metadata records.
        text, negative, params, region_texts = self._addons(pipe, request, job.notices)

        # Images the pipeline works on.
        call_args = self._image_args(request)
        plan = call_args.pop("_plan", None)
        if job.init_latents is not None and request.mode is Mode.IMG2IMG:  # the hires fix's latent upscale
            call_args, plan = {"image": job.init_latents, "strength": request.strength}, None
        if control.active(request.controls):  # control images, scales and step ranges
            size = plan.work_image.size if plan is not None else (request.width, request.height)
            acting = control.active(request.controls)  # a Union model is told each control's mode
            call_args = control.call_args(call_args, acting, size, plan, pipe=pipe, loaded=self._loaded_controls(acting))
        if request.controls:  # what the metadata records of them (all, also those acting on no step)
            request = self._record_controls(request, params, job)

        # Reference images (IP-Adapter): in the UNet for this job only; a job without them runs without.
        refs = reference.active(request.references)
        if refs:
            adapters = self.references.resolve(refs, self.info, self.base.unet)
            cfg = request.guidance_scale > 1 and self.base.unet.config.time_cond_proj_dim is None
            call_args.update(self.references.apply(pipe, refs, adapters, self.placement.settings.device, cfg))
        else:
            self.references.remove(self.base.unet)
        if request.references:  # what the metadata records of them (all, also those of weight 0)
            request = self._record_references(request, params, job)

        # Regions: each area's share of its prompt at the working size (the UNet's processors are wrapped
        # for the denoising only, in _run).
        size = plan.work_image.size if plan is not None else (request.width, request.height)
        area = regions.shares(regions.active(request.regions), request, plan, size) if region_texts else None
        params += regions.params(request.regions)

        # Speed (Fast: compiled denoiser, Draft: step cache); records "Speed" in params, may add notices.
        applied = speed.apply(pipe, request, self.device, data_dir=self.state_dir, params=params,
                              notices=job.notices, on_progress=job.on_progress, started=job.started)
        # Compiled blocks are not given the in-step cancel hooks (a hook inside a compiled region would
        # break its graph): under Fast, cancel is checked between steps.
        compiled = applied.speed == "fast"

        # Encode, denoise and decode; out of memory, again one memory preset lower.
        images, seeds, phases = self.placement.run(
            lambda: self._run(request.mode, text, negative, call_args, plan, job, compiled, region_texts, area),
            lambda: [self.active], job.notices)
        encode_s, denoise_s, decode_s = phases
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.settings,
                      timings=Timings(encode=encode_s, denoise=denoise_s, decode=decode_s),
                      params=tuple(params), notices=tuple(job.notices))

    def _run(self, mode: Mode, text, negative, call_args, plan, job: Job, compiled: bool = False,
             region_texts: tuple[str, ...] = (), area=None):
        """The whole batch; returns (images, seeds, (encode, denoise, decode) seconds). ``region_texts``
        and ``area``: the regions' prompts and shares (engine.core.regions), none for most jobs."""
        import torch

        request = job.request
        pipe = self._pipeline(mode, control.active(request.controls))  # again: the ladder may have moved the hooks
        encode_s = denoise_s = decode_s = 0.0
        images, seeds = [], []
        if job.latents is not None:
            job.latents.clear()  # (again after an out-of-memory retry)
        preview = self.previews.for_size((request.width, request.height))
        try:
            with torch.inference_mode():
                # Prompt embeddings, once for the whole batch.
                t0 = time.perf_counter()
                # (the last encoding again when the text and what shapes its encoders are unchanged: live painting)
                settings = self.placement.settings
                key = (text, negative, request.clip_skip, self._text_addons,
                       modules_key(*(getattr(pipe, name, None) for name in TEXT_MODULES)),
                       str(settings.device), settings.preset, region_texts)
                embeds, region_embeds = self.prompt_cache.get(key, lambda: (
                    prompts.encode_prompts(pipe, self.info.family, text, negative, request.clip_skip),
                    tuple(prompts.encode_prompts(pipe, self.info.family, t, "", request.clip_skip)["prompt_embeds"]
                          for t in region_texts)))
                encode_s += time.perf_counter() - t0
                if region_embeds:  # each region's latent pixels attend to its prompt (engine.core.regions)
                    unet = pipe.unet
                    size = plan.work_image.size if plan is not None else (request.width, request.height)
                    latent = (size[1] // pipe.vae_scale_factor, size[0] // pipe.vae_scale_factor)
                    cfg = request.guidance_scale > 1 and unet.config.time_cond_proj_dim is None
                    def masked():
                        return regions.unet_regions(unet, region_embeds, area, latent, cfg)
                else:
                    masked = contextlib.nullcontext

                for index in range(request.batch_count):
                    seed = job.seed(index)
                    job.check_cancel(0)

                    # Denoising loop (inside diffusers): progress + preview + cancel per step and per block.
                    t0 = time.perf_counter()
                    pipe.scheduler = make_scheduler(request.sampler, self.scheduler_config, seed)
                    reporter = StepReporter(job, index, preview=preview)
                    with masked(), cancel_within_steps([] if compiled else control.denoisers(pipe), reporter), \
                            noise.drawn_from(job):
                        latents = pipe(
                            **embeds,
                            **call_args,
                            num_inference_steps=request.steps,
                            guidance_scale=request.guidance_scale,
                            generator=torch.Generator("cpu").manual_seed(seed),
                            output_type="latent",
                            callback_on_step_end=reporter.on_step_end,
                        ).images
                    denoise_s += time.perf_counter() - t0
                    job.check_cancel(reporter.total, reporter.total)
                    if job.latents is not None:  # the hires fix enlarges these (a latent upscaler)
                        job.latents.append(latents)

                    # Decode (never a silent black image), and paste back for inpainting.
                    t0 = time.perf_counter()
                    image = self._decode(pipe, latents, job.notices)
                    image = imageprep.finish(plan, image, request.mask_blur)  # paste back / crop back
                    decode_s += time.perf_counter() - t0
                    images.append(image)
                    seeds.append(seed)
        finally:
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()
        return images, seeds, (encode_s, denoise_s, decode_s)

    def _record_controls(self, request: GenerationRequest, params: list, job: Job) -> GenerationRequest:
        """The request with each control's model path and hash as run; A1111's ``ControlNet N`` pairs in ``params``."""
        return control.record(request, self._loaded_controls(request.controls), params, job.notice)

    def _record_references(self, request: GenerationRequest, params: list, job: Job) -> GenerationRequest:
        """The request with each reference's adapter path, hash and encoder as run; A1111's ``ControlNet N``
        pairs (the ControlNet extension's IP-Adapter units, numbered after the control inputs) in ``params``."""
        adapters = self.references.resolve(request.references, self.info, self.base.unet)
        for i, (r, a) in enumerate(zip(request.references, adapters)):
            params.append((f"ControlNet {len(request.controls) + i}", reference.a1111_line(r, a)))
            if r.model_hash and a.hash10 and r.model_hash != a.hash10:
                job.notice(f"IP-Adapter {a.name} is not the one asked for (hash {a.hash10}, not {r.model_hash}): "
                           "the image will differ")
        return request.replace(references=tuple(dataclasses.replace(r, model=a.path, model_hash=a.hash10, encoder=a.encoder)
                                                for r, a in zip(request.references, adapters)))

    def _decode(self, pipe, latents, notices: list[str]):
        import torch

        vae = pipe.vae
        # SDXL's own VAE overflows in fp16: upcast from the start unless the VAE says it is fp16-safe.
        # (the family first: asking a model its dtype walks its modules)
        upcast = (self.caps.latent_space == "sdxl" and getattr(vae.config, "force_upcast", False)
                  and vae.dtype == torch.float16)
        decoded = core_decode.decode(vae, latents, notices, upcast=upcast)
        return pipe.image_processor.postprocess(decoded, output_type="pil")[0]

    def _addons(self, pipe, request: GenerationRequest, notices: list[str]):
        """Apply the LoRAs, embeddings and VAE a request names; returns (prompt, negative, metadata pairs,
        the regions' prompts)."""
        text = prompt_policy.prepare(request.prompt, request.negative_prompt, self.caps.group, loras=True,
                                     weighting=True, notices=notices,
                                     regions=tuple(r.prompt for r in regions.active(request.regions)))
        library = self.library
        family = self.info.family
        applied = self.addons.loras.apply(pipe, self.info, self.caps.short, loras.wanted(library, text.loras, family),
                                          notices, hasher=self.hasher, family_label=family_label)
        self._text_addons: tuple = tuple((a.path, a.weight) for a in applied)  # part of the prompt cache's key

        if library is not None:
            names = prompts.embedding_names_in(text.prompt + "\n" + text.negative, library.embedding_names())
            entries = [e for e in (library.find("embedding", n, family) for n in names) if e]
            if entries:
                Addons.own_tokenizers(list(self.pipes.values()))
                self.addons.load_embeddings(pipe, self.info, [e.info for e in entries], notices)
        self._text_addons += tuple(sorted(self.addons.embeddings.items()))

        vae_path = str(Path(request.vae).expanduser().resolve()) if request.vae else ""
        vae, changed = self.addons.vae_for(pipe, self.info, vae_path, self.dtype)
        if changed:
            for p in self.pipes.values():
                p.vae = vae
            self.placement.apply(self.placement.settings.preset, [self.active], force=True)

        params: list[tuple[str, str]] = loras.params(applied)
        if request.clip_skip != 1:
            params.append(("Clip skip", str(request.clip_skip)))
        if vae_path:
            params.append(("VAE hash", self.hasher(vae_path)[:10]))
            params.append(("VAE", Path(vae_path).name))
        return text.prompt, text.negative, params, text.regions

    def _image_args(self, request: GenerationRequest) -> dict:
        from PIL import Image

        w, h = request.width, request.height
        inpainting = self.info.inpainting
        if request.mode is Mode.INPAINT:
            plan = imageprep.plan_inpaint(request)
            return {"image": plan.work_image, "mask_image": plan.work_mask, "strength": request.strength,
                    "width": w, "height": h, "_plan": plan}
        if request.mode is Mode.IMG2IMG:
            plan = imageprep.plan_img2img(request.init_image, w, h)
            init = plan.work_image
            if inpainting:  # an inpainting model repaints everything under a full mask
                return {"image": init, "mask_image": Image.new("L", (w, h), 255), "strength": request.strength,
                        "width": w, "height": h, "_plan": plan}
            return {"image": init, "strength": request.strength, "_plan": plan}
        if inpainting:  # txt2img on an inpainting model: a blank canvas under a full mask
            return {"image": Image.new("RGB", (w, h), (127, 127, 127)), "mask_image": Image.new("L", (w, h), 255),
                    "strength": 1.0, "width": w, "height": h}
        return {"width": w, "height": h}


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> SDRunner:
    """Load an SD model (diffusers folder or single .safetensors) and place it. Engine thread."""
    info, pipe, seconds = loading.load_pipeline(info.path, ctx.dtype, info)
    return SDRunner(info, pipe, caps, ctx, seconds)

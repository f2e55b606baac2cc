"""The Engine: one loaded model, requests in, images out.

An Engine is owned by exactly one thread (the app's engine thread, or the CLI's main thread):
diffusers pipelines keep per-run scheduler state and are not thread-safe. Every public method runs
on that owning thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import engine  # noqa: F401  (offline environment before diffusers is imported)
from engine import devices, imageprep, loading
from engine.api import (
    MAX_SEED,
    Cancelled,
    GenerationRequest,
    Mode,
    ModelInfo,
    OutOfMemory,
    Progress,
    Result,
    RuntimeSettings,
    Timings,
    random_seed,
)
from engine.families import dispatch as family_dispatch
from engine.modelfiles import model_hash
from engine.preview import latents_to_preview
from engine.samplers import make_scheduler

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


@dataclass
class _Loaded:
    info: ModelInfo
    base: object  # the pipeline as loaded
    settings: RuntimeSettings
    requested_preset: str
    scheduler_config: dict
    load_seconds: float
    pipes: dict = field(default_factory=dict)  # pipeline class -> pipeline sharing base's modules
    active: object = None  # the pipeline offload hooks are currently installed on
    hash: str | None = None


class Engine:
    """Loads one model at a time and runs generation requests on it.

    ``device``: None picks CUDA, then Apple MPS, then CPU. ``preview_every``: a preview image is
    attached to the progress event every that many steps (and on the last step).
    """

    def __init__(self, device: str | None = None, preview_every: int = 2):
        import torch

        self.device = devices.pick_device(device)
        self.dtype = devices.pick_dtype(self.device)
        self.preview_every = max(1, preview_every)
        self._torch = torch
        self._model: _Loaded | None = None

    # ------------------------------------------------------------------ model

    @property
    def loaded(self) -> ModelInfo | None:
        return self._model.info if self._model else None

    @property
    def runtime(self) -> RuntimeSettings | None:
        return self._model.settings if self._model else None

    def load(self, model_path: str, memory_preset: str = "auto") -> ModelInfo:
        """Load ``model_path`` (kept loaded until another model is asked for) and apply the preset.

        A file that cannot be used raises a ModelError before the current model is touched, so the
        model already loaded stays usable. Runs on the engine thread.
        """
        # Non-SD families (aMUSEd, ...) load through their runner (engine.families).
        if (family_info := family_dispatch.load(self, model_path)) is not None:
            return family_info
        path = str(Path(model_path).expanduser().resolve())
        current = self._model
        if current and current.info.path == path:
            if current.requested_preset != memory_preset:
                self._reconfigure(current, memory_preset)
            return current.info
        from engine.modelfiles import check_model

        check_model(path)  # raises on a bad file while the previous model is still loaded
        self.unload()
        info, pipe, seconds = loading.load_pipeline(path, self.dtype)
        preset = devices.resolve_preset(memory_preset, self.device, info.family)
        settings = devices.runtime_settings(preset, self.device, self.dtype)
        devices.apply_settings(pipe, settings)
        self._model = _Loaded(
            info=info,
            base=pipe,
            settings=settings,
            requested_preset=memory_preset,
            scheduler_config=dict(pipe.scheduler.config),
            load_seconds=seconds,
            pipes={type(pipe): pipe},
            active=pipe,
        )
        log.info("loaded %s (%s, %s) in %.2fs with preset %s", info.name, info.family, info.kind, seconds, preset)
        return info

    def unload(self) -> None:
        """Free the loaded model and its device memory. Runs on the engine thread."""
        if self._model is None:
            return
        self._model = None
        devices.empty_cache(self.device)

    def _reconfigure(self, loaded: _Loaded, memory_preset: str) -> None:
        preset = devices.resolve_preset(memory_preset, self.device, loaded.info.family)
        settings = devices.runtime_settings(preset, self.device, self.dtype)
        if settings != loaded.settings:
            pipe = loaded.active
            if hasattr(pipe, "remove_all_hooks"):
                pipe.remove_all_hooks()
            pipe.disable_attention_slicing()
            pipe.vae.disable_slicing()
            pipe.vae.disable_tiling()
            devices.apply_settings(pipe, settings)
            loaded.settings = settings
        loaded.requested_preset = memory_preset

    def _pipeline(self, loaded: _Loaded, mode: Mode):
        cls = loading.pipeline_class_for(loaded.info, mode)
        pipe = loaded.pipes.get(cls)
        if pipe is None:
            pipe = loaded.pipes[cls] = loading.derived_pipeline(loaded.base, loaded.info, mode)
        if pipe is not loaded.active and (loaded.settings.model_offload or loaded.settings.sequential_offload):
            # Offload hooks belong to one pipeline object: move them to the one about to run.
            loaded.active.remove_all_hooks()
            devices.apply_settings(pipe, loaded.settings)
        loaded.active = pipe
        return pipe

    # ------------------------------------------------------------- generation

    def generate(
        self,
        request: GenerationRequest,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run ``request`` and return its images. Runs on the engine thread.

        ``on_progress`` is called on this thread after every denoising step. Setting ``cancel``
        stops the job within one step with ``Cancelled`` and no image; the engine stays ready.
        """
        torch = self._torch
        started = time.perf_counter()

        # 0. Families with their own runner (aMUSEd, ...): engine.families, same guarantees.
        if (family_result := family_dispatch.generate(self, request, on_progress, cancel)) is not None:
            return family_result

        # 1. Check inputs (the request validated itself) and resolve the seed.
        seed = request.seed if request.seed is not None else random_seed()
        request = request.replace(seed=seed)
        _check_cancel(cancel, 0, request.steps)

        # 2. Model (loaded once, kept between requests).
        load_seconds = 0.0
        if request.model:
            was_loaded = self._model.info.path if self._model else None
            info = self.load(request.model, request.memory_preset)
            if was_loaded != info.path:
                load_seconds = self._model.load_seconds
        if self._model is None:
            from engine.api import InvalidRequest

            raise InvalidRequest("model", "no model is loaded: choose a model first")
        loaded = self._model
        if loaded.hash is None:
            loaded.hash = model_hash(loaded.info.path)

        # 3. Pipeline for the mode.
        pipe = self._pipeline(loaded, request.mode)

        # 4. Images the pipeline works on.
        call_args = self._image_args(request, loaded.info)
        plan = call_args.pop("_plan", None)

        encode_s = denoise_s = decode_s = 0.0
        images, seeds = [], []
        try:
            with torch.inference_mode():
                # 5. Prompt embeddings (once for the whole batch).
                t0 = time.perf_counter()
                embeds = self._encode(pipe, loaded.info, request)
                encode_s += time.perf_counter() - t0

                for index in range(request.batch_count):
                    image_seed = (seed + index) % (MAX_SEED + 1)
                    _check_cancel(cancel, 0, request.steps)

                    # 6. Denoising loop (inside diffusers), progress + preview + cancel per step.
                    t0 = time.perf_counter()
                    pipe.scheduler = make_scheduler(request.sampler, loaded.scheduler_config, image_seed)
                    callback = self._step_callback(request, loaded.info, index, on_progress, cancel, started)
                    latents = pipe(
                        **embeds,
                        **call_args,
                        num_inference_steps=request.steps,
                        guidance_scale=request.guidance_scale,
                        generator=torch.Generator("cpu").manual_seed(image_seed),
                        output_type="latent",
                        callback_on_step_end=callback,
                    ).images
                    denoise_s += time.perf_counter() - t0
                    _check_cancel(cancel, request.steps, request.steps)

                    # 7. Decode; paste back into the source (inpaint) or crop the padding off.
                    t0 = time.perf_counter()
                    image = self._decode(pipe, latents)
                    image = imageprep.finish(plan, image, request.mask_blur)  # paste back / crop back
                    decode_s += time.perf_counter() - t0
                    images.append(image)
                    seeds.append(image_seed)
        except Cancelled:
            raise
        except torch.cuda.OutOfMemoryError as exc:  # the ladder of presets is issue #6's work
            devices.empty_cache(self.device)
            raise OutOfMemory(
                f"the GPU ran out of memory on preset {loaded.settings.preset}; choose a lower memory preset"
            ) from exc
        finally:
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()

        # 8. Result.
        return Result(
            images=tuple(images),
            seeds=tuple(seeds),
            request=request,
            model=loaded.info,
            model_hash=loaded.hash,
            settings=loaded.settings,
            timings=Timings(
                load=load_seconds,
                encode=encode_s,
                denoise=denoise_s,
                decode=decode_s,
                total=time.perf_counter() - started,
            ),
        )

    def _image_args(self, request: GenerationRequest, info: ModelInfo) -> dict:
        from PIL import Image

        w, h = request.width, request.height
        if request.mode is Mode.INPAINT:
            plan = imageprep.plan_inpaint(request)
            return {
                "image": plan.work_image,
                "mask_image": plan.work_mask,
                "strength": request.strength,
                "width": w,
                "height": h,
                "_plan": plan,
            }
        if request.mode is Mode.IMG2IMG:
            plan = imageprep.plan_img2img(request.init_image, w, h)
            init = plan.work_image
            if info.inpainting:  # an inpainting model repaints everything under a full mask
                return {"image": init, "mask_image": Image.new("L", (w, h), 255), "strength": request.strength,
                        "width": w, "height": h, "_plan": plan}
            return {"image": init, "strength": request.strength, "_plan": plan}
        if info.inpainting:  # txt2img on an inpainting model: a blank canvas under a full mask
            return {
                "image": Image.new("RGB", (w, h), (127, 127, 127)),
                "mask_image": Image.new("L", (w, h), 255),
                "strength": 1.0,
                "width": w,
                "height": h,
            }
        return {"width": w, "height": h}

    def _encode(self, pipe, info: ModelInfo, request: GenerationRequest) -> dict:
        cfg = request.guidance_scale > 1.0
        device = pipe._execution_device
        if info.family == "sdxl":
            pe, ne, pp, npp = pipe.encode_prompt(
                prompt=request.prompt,
                device=device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=cfg,
                negative_prompt=request.negative_prompt or None,
            )
            return {
                "prompt_embeds": pe,
                "negative_prompt_embeds": ne,
                "pooled_prompt_embeds": pp,
                "negative_pooled_prompt_embeds": npp,
            }
        pe, ne = pipe.encode_prompt(request.prompt, device, 1, cfg, request.negative_prompt or None)
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne}

    def _step_callback(self, request, info, index, on_progress, cancel, started):
        preview_size = (request.width, request.height)
        every = self.preview_every

        def on_step_end(pipe, i, _t, kwargs):
            step, total = i + 1, pipe.num_timesteps
            if on_progress is not None:
                preview = None
                if step % every == 0 or step == total:
                    preview = latents_to_preview(kwargs["latents"], info.family, preview_size)
                on_progress(
                    Progress(
                        step=step,
                        total=total,
                        elapsed=time.perf_counter() - started,
                        image_index=index,
                        batch_count=request.batch_count,
                        preview=preview,
                    )
                )
            _check_cancel(cancel, step, total)
            return kwargs

        return on_step_end

    def _decode(self, pipe, latents):
        torch = self._torch
        vae = pipe.vae
        upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        if upcast:
            vae.to(torch.float32)
        latents = latents.to(vae.dtype)
        mean = getattr(vae.config, "latents_mean", None)
        std = getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        decoded = vae.decode(latents, return_dict=False)[0]
        if upcast:
            vae.to(torch.float16)
        return pipe.image_processor.postprocess(decoded, output_type="pil")[0]


def _check_cancel(cancel: threading.Event | None, step: int, total: int) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(step, total)

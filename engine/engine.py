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
from engine import devices, imageprep, loading, memory, prompts
from engine.core import speed
from engine.api import (
    MAX_SEED,
    Cancelled,
    EaselError,
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
from engine.lora import Addons
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
    addons: Addons = field(default_factory=Addons)
    previewer: object = None  # a TinyAutoencoderPreview, False when none is available, None before looking


class Engine:
    """Loads one model at a time and runs generation requests on it.

    ``device``: None picks CUDA, then Apple MPS, then CPU. ``preview_every``: a preview image is
    attached to the progress event every that many steps (and on the last step). ``library`` (an
    ``engine.models.ModelLibrary``) resolves LoRA and embedding names and finds preview decoders; without
    one, prompts cannot name add-ons. ``state_dir`` keeps the memory rung that worked per (model, GPU)
    across restarts (None: for this process only).
    """

    def __init__(self, device: str | None = None, preview_every: int = 2, library=None, state_dir=None,
                 keep_models: int = 1):
        import collections

        import torch

        self.device = devices.pick_device(device)
        self.dtype = devices.pick_dtype(self.device)
        self.preview_every = max(1, preview_every)
        self.library = library
        self.rungs = memory.RungMemory(Path(state_dir) / "memory-presets.json" if state_dir else None)
        self.state_dir = state_dir  # also holds the compiler cache (engine.core.speed)
        self._gpu = memory.gpu_key(self.device)
        self._torch = torch
        self._model: _Loaded | None = None
        # Models switched away from stay in system RAM (``keep_models`` of them, while memory allows),
        # so switching back is a move to the device instead of a load from disk.
        self.keep_models = keep_models
        self._parked: collections.OrderedDict[str, tuple[str, _Loaded]] = collections.OrderedDict()

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

        checked = check_model(path)  # raises on a bad file while the previous model is still loaded
        started = time.perf_counter()
        parked = self._parked.pop(path, None)
        self._park_current()
        if parked is not None and parked[0] == memory.model_key(path):
            loaded = parked[1]
            self._model = loaded
            self._reconfigure(loaded, memory_preset, force=True)  # back onto the device
            loaded.load_seconds = time.perf_counter() - started
            log.info("switched back to %s (kept in RAM) in %.2fs", loaded.info.name, loaded.load_seconds)
            return loaded.info
        info, pipe, seconds = loading.load_pipeline(path, self.dtype, checked)
        preset = self._start_preset(path, memory_preset, info.family)
        settings = self._place(pipe, info, preset)
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

    def _start_preset(self, path: str, requested: str, family: str) -> str:
        """``auto`` starts from the free memory, or lower where this model ran out of memory before."""
        preset = devices.resolve_preset(requested, self.device, family)
        remembered = self.rungs.get(path, self._gpu) if requested == "auto" else None
        return memory.lowest(preset, remembered) if remembered else preset

    def _place(self, pipe, info: ModelInfo, preset: str) -> RuntimeSettings:
        """Put a new pipeline on the device, walking down the memory ladder if it does not fit."""
        torch = self._torch
        while True:
            settings = devices.runtime_settings(preset, self.device, self.dtype)
            try:
                devices.apply_settings(pipe, settings)
                return settings
            except torch.OutOfMemoryError:
                pipe.to("cpu")
                devices.empty_cache(self.device)
                lower = memory.lower(preset)
                if lower is None:
                    raise OutOfMemory(f"{info.name} does not fit in the GPU's memory even with the "
                                      "“minimal” preset; close other programs that use the GPU") from None
                log.warning("%s did not fit with preset %s; trying %s", info.name, preset, lower)
                preset = lower
                self.rungs.remember(info.path, self._gpu, preset)

    def unload(self) -> None:
        """Free the loaded model (and the ones kept in RAM) and their memory. Runs on the engine thread."""
        family_dispatch.unload(self)
        self._parked.clear()
        if self._model is None:
            return
        self._model = None
        devices.empty_cache(self.device)

    def _park_current(self) -> None:
        """Keep the current model in system RAM for a quick switch back, if RAM allows; else free it."""
        loaded, self._model = self._model, None
        if loaded is not None and self.keep_models > 0 and _ram_allows(_model_bytes(loaded.base)):
            pipe = loaded.active
            if hasattr(pipe, "remove_all_hooks"):
                pipe.remove_all_hooks()
            if self.device != "cpu":
                pipe.to("cpu")
            self._parked[loaded.info.path] = (memory.model_key(loaded.info.path), loaded)
        while len(self._parked) > self.keep_models:
            self._parked.popitem(last=False)
        devices.empty_cache(self.device)

    def _reconfigure(self, loaded: _Loaded, memory_preset: str, preset: str | None = None,
                     force: bool = False) -> None:
        """Switch the loaded model to ``preset`` (default: what ``memory_preset`` resolves to)."""
        if preset is None:
            preset = self._start_preset(loaded.info.path, memory_preset, loaded.info.family)
        settings = devices.runtime_settings(preset, self.device, self.dtype)
        if force or settings != loaded.settings:
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
        Out of device memory, the job runs again one memory preset lower (``Result.notices`` says
        so); it raises ``OutOfMemory`` only when the lowest preset fails too, with the model back
        on its original preset.
        """
        torch = self._torch
        started = time.perf_counter()
        notices: list[str] = []

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
            loaded.hash = self._sha256(loaded.info.path)[:10]

        # 3. Pipeline for the mode.
        pipe = self._pipeline(loaded, request.mode)

        # 4. Add-ons the prompt names (LoRAs, embeddings) and the VAE; what the metadata records.
        text, negative, params = self._addons(loaded, pipe, request, notices)

        # 5. Images the pipeline works on.
        call_args = self._image_args(request, loaded.info)
        plan = call_args.pop("_plan", None)

        # 5b. Speed (Fast: compiled denoiser, Draft: step cache); records "Speed" in params, may add notices.
        speed.apply(pipe, request, self.device, data_dir=self.state_dir, params=params, notices=notices,
                    on_progress=on_progress, started=started)

        # 6. Encode, denoise and decode; out of memory, again one memory preset lower.
        first_preset = loaded.settings.preset
        while True:
            try:
                images, seeds, phases = self._run(loaded, pipe, request, text, negative, call_args, plan,
                                                  on_progress, cancel, started, notices)
                break
            except torch.OutOfMemoryError:
                if hasattr(pipe, "maybe_free_model_hooks"):
                    pipe.maybe_free_model_hooks()
                devices.empty_cache(self.device)
                lower = memory.lower(loaded.settings.preset)
                if lower is None:
                    self._reconfigure(loaded, loaded.requested_preset, first_preset)
                    devices.empty_cache(self.device)
                    raise OutOfMemory(
                        "the GPU ran out of memory even with the lowest memory preset (“minimal”); "
                        "try a smaller image size or close other programs that use the GPU"
                    ) from None
                log.warning("out of memory with preset %s; retrying with %s", loaded.settings.preset, lower)
                self._reconfigure(loaded, loaded.requested_preset, lower)
                pipe = self._pipeline(loaded, request.mode)
        if loaded.settings.preset != first_preset:
            self.rungs.remember(loaded.info.path, self._gpu, loaded.settings.preset)
            notices.insert(0, f"The GPU ran out of memory with the “{first_preset}” memory preset; Easel "
                              f"finished the job with “{loaded.settings.preset}” and will use it for this model "
                              "from now on.")

        # 7. Result.
        encode_s, denoise_s, decode_s = phases
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
            params=tuple(params),
            notices=tuple(notices),
        )

    def _run(self, loaded, pipe, request, text, negative, call_args, plan, on_progress, cancel, started, notices):
        """Steps 6a-6c of generate for the whole batch; returns (images, seeds, (encode, denoise, decode) s)."""
        torch = self._torch
        encode_s = denoise_s = decode_s = 0.0
        images, seeds = [], []
        try:
            with torch.inference_mode():
                # 6a. Prompt embeddings (once for the whole batch).
                t0 = time.perf_counter()
                embeds = prompts.encode_prompts(pipe, loaded.info.family, text, negative, request.clip_skip)
                encode_s += time.perf_counter() - t0

                for index in range(request.batch_count):
                    image_seed = (request.seed + index) % (MAX_SEED + 1)
                    _check_cancel(cancel, 0, request.steps)

                    # 6b. Denoising loop (inside diffusers), progress + preview + cancel per step.
                    t0 = time.perf_counter()
                    pipe.scheduler = make_scheduler(request.sampler, loaded.scheduler_config, image_seed)
                    callback = self._step_callback(request, loaded, index, on_progress, cancel, started)
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

                    # 6c. Decode (never a silent black image), and paste back for inpainting.
                    t0 = time.perf_counter()
                    image = self._decode(pipe, loaded.info, latents, notices)
                    image = imageprep.finish(plan, image, request.mask_blur)  # paste back / crop back
                    decode_s += time.perf_counter() - t0
                    images.append(image)
                    seeds.append(image_seed)
        finally:
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()
        return images, seeds, (encode_s, denoise_s, decode_s)

    def _sha256(self, path: str) -> str:
        if self.library is not None:
            return self.library.sha256(path)
        from engine.models.hashes import target_file
        from engine.modelfiles import sha256_file

        return sha256_file(target_file(path))

    def _addons(self, loaded: _Loaded, pipe, request: GenerationRequest, notices: list[str]):
        """Apply the LoRAs, embeddings and VAE a request names; returns (prompt, negative, metadata pairs)."""
        parsed = prompts.extract_loras(request.prompt)
        parsed_neg = prompts.extract_loras(request.negative_prompt)
        notices += list(parsed.problems) + list(parsed_neg.problems)
        refs = list(parsed.loras) + [r for r in parsed_neg.loras if r.name not in {x.name for x in parsed.loras}]
        library = self.library
        family = loaded.info.family
        wanted = []
        for ref in refs:
            entry = library.find("lora", ref.name, family) if library is not None else None
            wanted.append((ref, entry.info if entry else None))
        applied = loaded.addons.apply_loras(pipe, loaded.info, wanted, notices, hasher=self._sha256)

        if library is not None:
            names = prompts.embedding_names_in(parsed.text + "\n" + parsed_neg.text, library.embedding_names())
            entries = [library.find("embedding", n, family) for n in names]
            loaded.addons.load_embeddings(pipe, loaded.info, [e.info for e in entries if e], notices)

        vae_path = str(Path(request.vae).expanduser().resolve()) if request.vae else ""
        vae, changed = loaded.addons.vae_for(pipe, loaded.info, vae_path, self.dtype)
        if changed:
            for p in loaded.pipes.values():
                p.vae = vae
            self._reconfigure(loaded, loaded.requested_preset, loaded.settings.preset, force=True)

        params: list[tuple[str, str]] = []
        if applied:
            params.append(("Lora hashes", ", ".join(f"{a.name}: {a.hash12}" for a in applied)))
        if request.clip_skip != 1:
            params.append(("Clip skip", str(request.clip_skip)))
        if vae_path:
            params.append(("VAE hash", self._sha256(vae_path)[:10]))
            params.append(("VAE", Path(vae_path).name))
        return parsed.text, parsed_neg.text, params

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

    def _step_callback(self, request, loaded, index, on_progress, cancel, started):
        preview_size = (request.width, request.height)
        every = self.preview_every
        info = loaded.info
        previewer = self._previewer(loaded) if on_progress is not None else None

        def on_step_end(pipe, i, _t, kwargs):
            step, total = i + 1, pipe.num_timesteps
            if on_progress is not None:
                preview = None
                if step % every == 0 or step == total:
                    preview = (previewer(kwargs["latents"], preview_size) if previewer
                               else latents_to_preview(kwargs["latents"], info.family, preview_size))
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

    def _previewer(self, loaded: _Loaded):
        """The model's tiny-autoencoder previewer if one is on disk (looked up once per model)."""
        if loaded.previewer is None:
            loaded.previewer = False
            entry = self.library.taesd(loaded.info.family) if self.library is not None else None
            if entry is not None:
                from engine.preview import TinyAutoencoderPreview

                try:
                    loaded.previewer = TinyAutoencoderPreview(entry.path, self.device, self.dtype)
                except (OSError, ValueError, RuntimeError) as exc:
                    log.warning("preview decoder %s unusable: %s", entry.path, exc)
        return loaded.previewer or None

    def _decode(self, pipe, info: ModelInfo, latents, notices: list[str]):
        """Latents to a PIL image. A NaN/infinite or all-black decode runs the VAE once more in fp32;
        if that is bad too, a plain error (never a silent black image)."""
        torch = self._torch
        vae = pipe.vae
        # SDXL's own VAE overflows in fp16: upcast from the start unless the VAE says it is fp16-safe.
        upcast = vae.dtype == torch.float16 and info.family == "sdxl" and getattr(vae.config, "force_upcast", False)
        decoded = self._decode_with(vae, latents, torch.float32 if upcast else vae.dtype)
        if _bad_decode(torch, decoded):
            log.warning("decode gave %s; retrying the VAE in fp32", "NaN/inf" if not torch.isfinite(decoded).all() else "black")
            decoded = self._decode_with(vae, latents, torch.float32)
            if _bad_decode(torch, decoded):
                raise EaselError(
                    "the image came out blank: the model produced invalid values (NaN) even with the VAE in "
                    "full precision; try another VAE, lower LoRA weights or a lower CFG scale"
                )
            notices.append("The VAE produced an invalid (black) image in half precision; Easel decoded it again "
                           "in full precision.")
        return pipe.image_processor.postprocess(decoded, output_type="pil")[0]

    def _decode_with(self, vae, latents, dtype):
        torch = self._torch
        original = vae.dtype
        if dtype != original:
            vae.to(dtype)
        try:
            latents = latents.to(dtype)
            mean = getattr(vae.config, "latents_mean", None)
            std = getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
                std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
                latents = latents * std / vae.config.scaling_factor + mean
            else:
                latents = latents / vae.config.scaling_factor
            return vae.decode(latents, return_dict=False)[0].float()
        finally:
            if dtype != original:
                vae.to(original)


def _model_bytes(pipe) -> int:
    total = 0
    for module in getattr(pipe, "components", {}).values():
        if hasattr(module, "parameters"):
            total += sum(p.numel() * p.element_size() for p in module.parameters())
    return total


def _ram_allows(nbytes: int) -> bool:
    """Room in system RAM to keep a model of ``nbytes`` parked (and load another beside it)."""
    try:
        import psutil

        return psutil.virtual_memory().available > 2 * nbytes + 2 * 2**30
    except (ImportError, OSError):
        return nbytes < 256 * 2**20


def _bad_decode(torch, decoded) -> bool:
    """NaN/inf anywhere, or every pixel black (decoded values live in [-1, 1])."""
    return not bool(torch.isfinite(decoded).all()) or float(decoded.max()) <= -0.99


def _check_cancel(cancel: threading.Event | None, step: int, total: int) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(step, total)

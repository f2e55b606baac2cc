"""The speed setting: Standard, Fast and Draft, put on (and taken off) a loaded pipeline's denoiser.

- **Standard**: the denoiser as loaded.
- **Fast**: ``torch.compile`` of the denoiser's repeated blocks (diffusers' regional
  ``compile_repeated_blocks``; the whole model where it names none), channels-last memory for UNets, fused QKV
  projections where the model has no LoRA adapters, and the best attention backend installed
  (``set_attention_backend``: FlashAttention 3, then FlashAttention, else PyTorch's SDPA). The same
  pixels as Standard within floating-point tolerance.
- **Draft**: a step cache, trading a little quality for speed: First Block Cache
  (``enable_cache(FirstBlockCacheConfig)``) on transformers whose pipeline opens cache contexts,
  Pyramid Attention Broadcast on UNets (diffusers has no DeepCache; PAB reuses the attention
  outputs of the step before, which is what it offers for UNets).

The state lives on the denoiser module, so ``apply`` is idempotent and cheap when nothing changes,
and a model switched back from RAM keeps its compiled code. Compiling happens lazily, in the first
denoising step of each new shape family (image size, guidance on/off); the compiler's caches are
kept in the data folder (``compile-cache/``), so a restart reuses them. If compiling fails (no C
compiler, an unsupported op), the step runs eagerly, the model goes back to Standard for the rest of
the session, and the job gets a one-line notice. Everything here runs on the engine thread.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.api import SPEEDS, InvalidRequest, Progress

log = logging.getLogger(__name__)

COMPILE_STATUS = "Optimising for this GPU, once"
CACHE_FOLDER = "compile-cache"
# torch.compile's mode; EASEL_COMPILE_MODE overrides it (e.g. "max-autotune-no-cudagraphs") so a
# GPU check can try another without a code change. EASEL_COMPILE_SCOPE=whole compiles the whole
# denoiser instead of its repeated blocks: on 2 CPU cores the tiny SD UNet took 127 s to compile
# whole against 35 s for its repeated blocks, which is why regional is the default.
COMPILE_MODE_ENV = "EASEL_COMPILE_MODE"
COMPILE_SCOPE_ENV = "EASEL_COMPILE_SCOPE"
# Draft knobs: First Block Cache's residual threshold (ParaAttention's FLUX figure), and how often
# Pyramid Attention Broadcast recomputes attention within its timestep window (every 2nd step).
FBC_THRESHOLD = 0.08
PAB_SKIP = 2
PAB_TIMESTEPS = (100, 800)
# Attention backends in order of preference; only those that need nothing downloaded.
_BACKENDS = (("_flash_3", "is_flash_attn_3_available"), ("flash", "is_flash_attn_available"))


@dataclass(frozen=True)
class Applied:
    """What a job runs with. ``speed`` is what actually applies (Standard after a fallback),
    ``label`` the metadata text ("fast", "draft (Pyramid Attention Broadcast)"), ``parts`` each piece."""

    requested: str
    speed: str
    label: str
    parts: tuple[str, ...] = ()


@dataclass
class _State:
    """Kept on the denoiser as ``_easel_speed``."""

    speed: str = "standard"
    parts: tuple[str, ...] = ()
    compiled: dict = field(default_factory=dict)  # module -> guarded compiled call (kept for reuse)
    fused: bool = False
    qkv_wanted: bool = False  # whether fusing was asked for when Fast went on (a LoRA since: redo)
    channels_last: bool = False
    backend: str | None = None
    cache: str | None = None  # "fbc" | "pab"
    timestep_hook: object = None
    timestep: list = field(default_factory=lambda: [float("inf")])  # the last one the UNet saw
    shapes: set = field(default_factory=set)
    failed: str | None = None  # why compiling failed on this model (Fast is then Standard)
    job: tuple | None = None  # (params, notices) of the job running now, for a fallback mid-run


def cache_dir(data_dir) -> Path:
    """The compiler cache folder inside Easel's data folder."""
    return Path(data_dir) / CACHE_FOLDER


def use_cache_dir(data_dir) -> Path | None:
    """Point inductor's (and Triton's) on-disk caches into ``data_dir``; None leaves torch's default.

    Set before compiling: inductor reads ``TORCHINDUCTOR_CACHE_DIR`` each time it looks for a cached
    graph, so later compiles (and the next launch) find what this one wrote.
    """
    if data_dir is None:
        return None
    root = cache_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(root / "triton")
    return root


def denoiser_of(pipe):
    """The pipeline's denoiser (``unet`` or ``transformer``), or None."""
    for name in ("transformer", "unet"):
        module = getattr(pipe, name, None)
        if module is not None and hasattr(module, "parameters"):
            return module
    return None


def apply(pipe, request, device: str, *, data_dir=None, params: list | None = None,
          notices: list | None = None, on_progress=None, started: float | None = None) -> Applied:
    """Put ``pipe``'s denoiser in ``request.speed`` (taking off whatever another speed put on).

    Call it right before denoising. It appends ("Speed", label) to ``params`` (for the A1111 text
    and the easel JSON) unless the speed is Standard, and one-line notices to ``notices``. Before the
    first compile of a shape family it sends ``on_progress`` a step-0 event whose ``stage_name`` is
    "Optimising for this GPU, once". If compiling then fails during the run, the "Speed" pair is
    taken out of ``params`` and a notice added. Runs on the engine thread.
    """
    speed = getattr(request, "speed", "standard")
    if speed not in SPEEDS:
        raise InvalidRequest("speed", f"must be one of {', '.join(SPEEDS)}")
    denoiser = denoiser_of(pipe)
    if denoiser is None:
        return Applied(speed, "standard", "standard", ())
    state = _state(denoiser)
    state.job = (params, notices)
    effective = speed
    if speed == "fast" and state.failed:
        effective = "standard"
        if notices is not None:
            notices.append(f"Fast speed is off for this model: compiling failed earlier ({state.failed}); "
                           "it ran at Standard speed.")
    if speed == "fast" and effective == "fast" and _streams_layers(pipe):
        effective = "standard"
        if notices is not None:
            notices.append("Fast speed needs the model on the GPU; the “minimal” memory preset streams it "
                           "layer by layer, so this ran at Standard speed.")

    if effective == "fast":
        use_cache_dir(data_dir)
    if effective != state.speed or (effective == "fast" and _qkv_wanted(denoiser) != state.qkv_wanted):
        _take_off(denoiser, state)
        if effective == "fast":
            _put_fast(denoiser, state, device)
        elif effective == "draft":
            _put_draft(pipe, denoiser, state)
        state.speed = effective
    if state.cache is not None:
        _reset_cache(denoiser)
        state.timestep[0] = float("inf")

    if effective == "fast":
        shape = (request.width, request.height, request.guidance_scale > 1.0)
        if shape not in state.shapes:
            state.shapes.add(shape)
            if on_progress is not None:
                elapsed = time.perf_counter() - started if started is not None else 0.0
                # Stage 0 (preparing): the window's it/s and ETA start afresh at step 1, not counting the compile.
                on_progress(Progress(step=0, total=request.steps, elapsed=elapsed, stage=0,
                                     stage_name=COMPILE_STATUS))
    label = _label(effective, state)
    if params is not None and effective != "standard":
        params.append(("Speed", label))
    return Applied(speed, effective, label, state.parts)


def reset(pipe) -> None:
    """Back to Standard (the denoiser as loaded). Runs on the engine thread."""
    denoiser = denoiser_of(pipe)
    if denoiser is not None and hasattr(denoiser, "_easel_speed"):
        state = denoiser._easel_speed
        _take_off(denoiser, state)
        state.speed = "standard"


# ------------------------------------------------------------------------------------ internals


def _state(denoiser) -> _State:
    state = getattr(denoiser, "_easel_speed", None)
    if state is None:
        state = _State()
        object.__setattr__(denoiser, "_easel_speed", state)  # not a submodule or parameter
    return state


def _label(speed: str, state: _State) -> str:
    if speed == "draft":
        return f"draft ({'First Block Cache' if state.cache == 'fbc' else 'Pyramid Attention Broadcast'})"
    return speed


def _is_unet(denoiser) -> bool:
    return type(denoiser).__name__.startswith("UNet")


def _streams_layers(pipe) -> bool:
    """Sequential CPU offload (the "minimal" preset on a GPU): accelerate's offloading hooks on the layers."""
    return any(getattr(getattr(m, "_hf_hook", None), "offload", False) for m in denoiser_of(pipe).modules())


def _qkv_wanted(denoiser) -> bool:
    # A LoRA is a peft layer on to_q/to_k/to_v: the fused to_qkv projection would skip it.
    return hasattr(denoiser, "fuse_qkv_projections") and not getattr(denoiser, "peft_config", None)


def _compile_options() -> dict:
    mode = os.environ.get(COMPILE_MODE_ENV) or None
    return {"mode": mode} if mode else {}


def _compile_scope() -> str:
    return "whole" if os.environ.get(COMPILE_SCOPE_ENV, "").strip().lower() == "whole" else "regional"


def _put_fast(denoiser, state: _State, device: str) -> None:
    import torch

    parts: list[str] = []
    if _is_unet(denoiser):
        denoiser.to(memory_format=torch.channels_last)
        state.channels_last = True
        parts.append("channels-last")
    state.qkv_wanted = _qkv_wanted(denoiser)
    if state.qkv_wanted:
        try:
            denoiser.fuse_qkv_projections()
            state.fused = True
            parts.append("fused QKV")
        except (ValueError, AttributeError, NotImplementedError) as exc:  # e.g. added-KV attention
            log.info("fused QKV not available for %s: %s", type(denoiser).__name__, exc)
    backend = _best_backend(denoiser, device)
    if backend:
        state.backend = backend
        parts.append(f"attention {backend.strip('_')}")
    if state.failed is None:
        if not state.compiled:
            blocks = [m for m in denoiser.modules()
                      if type(m).__name__ in (getattr(denoiser, "_repeated_blocks", None) or ())]
            if blocks and _compile_scope() == "regional":
                denoiser.compile_repeated_blocks(**_compile_options())  # diffusers' regional compilation
                modules = blocks
            else:
                denoiser.compile(**_compile_options())
                modules = [denoiser]
            for module in modules:  # each compiled call wrapped in the fallback guard
                state.compiled[module] = _guarded(module, module._compiled_call_impl, state)
        for module, call in state.compiled.items():
            module._compiled_call_impl = call
        whole = denoiser in state.compiled
        parts.append("torch.compile (whole model)" if whole
                     else f"torch.compile ({len(state.compiled)} repeated blocks)")
    state.parts = tuple(parts)


def _guarded(module, compiled, state: _State):
    """The compiled call, falling back to the eager one (and Standard) if compiling fails."""
    import torch

    eager = module._call_impl

    def call(*args, **kwargs):
        if state.failed is not None:
            return eager(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise  # the memory ladder's business, not a compile failure
        except Exception as exc:  # noqa: BLE001  (inductor and dynamo raise many types)
            out = eager(*args, **kwargs)  # raises if the model itself is at fault: not ours to hide
            _fall_back(state, exc)
            return out

    return call


def _fall_back(state: _State, exc: Exception) -> None:
    reason = _one_line(exc)
    log.warning("compiling the denoiser failed; running at Standard speed: %s", reason)
    state.failed = reason
    for module in state.compiled:
        module._compiled_call_impl = None
    params, notices = state.job or (None, None)
    if params is not None:
        params[:] = [p for p in params if p[0] != "Speed"]
    if notices is not None:
        notices.append(f"Fast speed could not compile the model here ({reason}); this image was made at "
                       "Standard speed.")


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    low = text.lower()
    if "compiler" in low or "cxx" in low or "calledprocesserror" in low or "no such file" in low:
        return "no working C++ compiler"
    return text[:160]


def _best_backend(denoiser, device: str) -> str | None:
    """Set the best installed attention backend on models whose processors route through diffusers'
    dispatcher; None where there is nothing better than the default (PyTorch SDPA)."""
    if not device.startswith("cuda") or not hasattr(denoiser, "set_attention_backend"):
        return None
    if not any(hasattr(getattr(m, "processor", None), "_attention_backend") for m in denoiser.modules()):
        return None
    from diffusers.utils import import_utils

    for name, check in _BACKENDS:
        if getattr(import_utils, check, lambda: False)():
            try:
                denoiser.set_attention_backend(name)
                return name
            except (ValueError, RuntimeError, ImportError) as exc:
                log.info("attention backend %s unusable: %s", name, exc)
    return None


def _put_draft(pipe, denoiser, state: _State) -> None:
    if not _is_unet(denoiser) and hasattr(denoiser, "enable_cache") and _opens_cache_context(pipe):
        from diffusers.hooks import FirstBlockCacheConfig

        denoiser.enable_cache(FirstBlockCacheConfig(threshold=FBC_THRESHOLD))
        state.cache = "fbc"
        state.parts = (f"First Block Cache (threshold {FBC_THRESHOLD})",)
        return
    from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    timestep = state.timestep

    def remember_timestep(module, args, kwargs):
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if t is not None:
            t = float(t.flatten()[0]) if hasattr(t, "flatten") else float(t)
            if t > timestep[0]:  # timesteps fall within a run: a rise is the next image of a batch
                _reset_cache(module)
            timestep[0] = t

    state.timestep_hook = denoiser.register_forward_pre_hook(remember_timestep, with_kwargs=True)
    apply_pyramid_attention_broadcast(denoiser, PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=PAB_SKIP,
        cross_attention_block_skip_range=PAB_SKIP,
        spatial_attention_timestep_skip_range=PAB_TIMESTEPS,
        cross_attention_timestep_skip_range=PAB_TIMESTEPS,
        current_timestep_callback=lambda: timestep[0],
    ))
    state.cache = "pab"
    state.parts = (f"Pyramid Attention Broadcast (attention every {PAB_SKIP} steps, timesteps "
                   f"{PAB_TIMESTEPS[0]}-{PAB_TIMESTEPS[1]})",)


def _opens_cache_context(pipe) -> bool:
    """First Block Cache needs the pipeline to name its passes (``with transformer.cache_context``)."""
    import inspect

    try:
        return "cache_context" in inspect.getsource(type(pipe).__call__)
    except (OSError, TypeError):
        return False


def _reset_cache(denoiser) -> None:
    """A new image starts with empty caches (the hooks keep the last step's outputs)."""
    from diffusers.hooks import HookRegistry

    HookRegistry.check_if_exists_or_initialize(denoiser).reset_stateful_hooks(recurse=True)


def _take_off(denoiser, state: _State) -> None:
    import torch

    for module in state.compiled:
        module._compiled_call_impl = None
    if state.fused:
        denoiser.unfuse_qkv_projections()
        state.fused = False
    if state.channels_last:
        denoiser.to(memory_format=torch.contiguous_format)
        state.channels_last = False
    if state.backend:
        denoiser.reset_attention_backend()
        state.backend = None
    if state.cache == "fbc":
        denoiser.disable_cache()
    elif state.cache == "pab":
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.pyramid_attention_broadcast import _PYRAMID_ATTENTION_BROADCAST_HOOK

        HookRegistry.check_if_exists_or_initialize(denoiser).remove_hook(_PYRAMID_ATTENTION_BROADCAST_HOOK,
                                                                         recurse=True)
        state.timestep_hook.remove()
        state.timestep_hook = None
    state.cache = None
    state.parts = ()

"""Device and dtype choice, and the memory presets (fast / balanced / low / minimal / auto).

A preset is a named bundle of diffusers memory switches. ``auto`` picks one from the free memory
of the device, so a user with a 4 GB card never needs to know the word "offload".
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.api import MEMORY_PRESETS, InvalidRequest, RuntimeSettings


@dataclass(frozen=True)
class Preset:
    attention_slicing: bool
    vae_slicing: bool
    vae_tiling: bool
    model_offload: bool
    sequential_offload: bool


PRESETS: dict[str, Preset] = {
    # Everything on the device, SDPA attention: fastest, needs the most memory.
    "fast": Preset(False, False, False, False, False),
    # Decode one image at a time and in tiles: large images no longer spike memory at decode.
    "balanced": Preset(False, True, True, False, False),
    # Only the component in use sits on the GPU (about 4-6 GB cards).
    "low": Preset(True, True, True, True, False),
    # Layer-by-layer streaming from system memory: slow, but runs on 2-4 GB.
    "minimal": Preset(True, True, True, False, True),
}

# Free device memory (GiB) needed to choose each preset with ``auto``, per family.
_AUTO_THRESHOLDS_GIB = {
    "sd1": (("fast", 6.0), ("balanced", 4.5), ("low", 2.5)),
    "sd2": (("fast", 7.0), ("balanced", 5.0), ("low", 3.0)),
    "sdxl": (("fast", 12.0), ("balanced", 9.0), ("low", 4.5)),
    # The IF cascade holds T5-XXL (~9.5 GB in fp16) and three UNets: only large cards keep it all loaded.
    "deepfloyd-if": (("fast", 28.0), ("balanced", 24.0), ("low", 6.0)),
    "sd-x4-upscaler": (("fast", 8.0), ("balanced", 5.0), ("low", 3.0)),
}


def pick_device(requested: str | None = None) -> str:
    """The torch device string to run on: ``requested`` if given, else cuda, then mps, then cpu."""
    import torch

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidRequest("device", "CUDA was asked for but no NVIDIA GPU is usable here")
        if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InvalidRequest("device", "Apple MPS was asked for but is not available here")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str):
    """fp16 on CUDA and MPS, fp32 on CPU (CPU fp16 kernels are slow or missing)."""
    import torch

    return torch.float16 if device.split(":")[0] in ("cuda", "mps") else torch.float32


def free_memory_gib(device: str) -> float | None:
    """Free memory on ``device`` in GiB, or None where it cannot be told (CPU, MPS)."""
    import torch

    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return free / 2**30
    return None


def resolve_preset(name: str, device: str, family: str, free_gib: float | None = None) -> str:
    """Turn ``auto`` into a concrete preset for this device and model family."""
    if name not in MEMORY_PRESETS:
        raise InvalidRequest("memory_preset", f"must be one of {', '.join(MEMORY_PRESETS)}")
    if name != "auto":
        return name
    kind = device.split(":")[0]
    if kind == "cpu":
        return "fast"
    if kind == "mps":
        return "balanced"
    if free_gib is None:
        free_gib = free_memory_gib(device)
    if free_gib is None:
        return "balanced"
    for preset, need in _AUTO_THRESHOLDS_GIB.get(family, _AUTO_THRESHOLDS_GIB["sdxl"]):
        if free_gib >= need:
            return preset
    return "minimal"


def lower_preset(name: str) -> str | None:
    """The next rung down the memory ladder, or None at the bottom."""
    order = ("fast", "balanced", "low", "minimal")
    i = order.index(name)
    return order[i + 1] if i + 1 < len(order) else None


def runtime_settings(preset_name: str, device: str, dtype) -> RuntimeSettings:
    """What a preset means on this device: offload only exists where there is a GPU to offload from."""
    p = PRESETS[preset_name]
    offload_ok = device.split(":")[0] == "cuda"
    return RuntimeSettings(
        device=device,
        dtype=str(dtype).replace("torch.", ""),
        preset=preset_name,
        attention_slicing=p.attention_slicing,
        vae_slicing=p.vae_slicing,
        vae_tiling=p.vae_tiling,
        model_offload=p.model_offload and offload_ok,
        sequential_offload=p.sequential_offload and offload_ok,
    )


def apply_settings(pipe, settings: RuntimeSettings) -> None:
    """Put a freshly loaded pipeline on its device with the memory switches of ``settings``.

    Runs on the engine thread.
    """
    if settings.sequential_offload:
        pipe.enable_sequential_cpu_offload(device=settings.device)
    elif settings.model_offload:
        pipe.enable_model_cpu_offload(device=settings.device)
    else:
        pipe.to(settings.device)
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    vae = pipe.vae
    if settings.vae_slicing:
        vae.enable_slicing()
    if settings.vae_tiling:
        vae.enable_tiling()


def empty_cache(device: str) -> None:
    """Give freed device memory back. A full ``gc.collect`` (a second or more with torch and
    diffusers imported) runs only for GPUs, where cached blocks matter; on the CPU reference
    counting has already freed an unloaded model's tensors."""
    import gc

    import torch

    if device.split(":")[0] in ("cuda", "mps"):
        gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()

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
    fp8_storage: bool = False  # the transformer and T5 kept in fp8, computed in the run's precision (CUDA)


PRESETS: dict[str, Preset] = {
    # Everything on the device, SDPA attention: fastest, needs the most memory.
    "fast": Preset(False, False, False, False, False),
    # Decode one image at a time and in tiles: large images no longer spike memory at decode.
    "balanced": Preset(False, True, True, False, False),
    # Only the component in use sits on the GPU (about 4-6 GB cards); a transformer or T5 in fp8
    # storage on CUDA (half its bf16 memory; engine.core.precision).
    "low": Preset(True, True, True, True, False, True),
    # Layer-by-layer streaming from system memory: slow, but runs on 2-4 GB (fp8 storage as "low").
    "minimal": Preset(True, True, True, False, True, True),
}

# Free device memory (GiB) "auto" needs for each preset when a family declares no thresholds of its
# own (each family's capabilities carry its ``memory_thresholds``; these are SDXL's).
DEFAULT_THRESHOLDS_GIB = (("fast", 12.0), ("balanced", 9.0), ("low", 4.5))


def thresholds_for(info, thresholds, denoiser_gb: float, other_gb: float):
    """``thresholds`` (a family's, computed for its bf16 denoiser of ``denoiser_gb``) for the model
    ``info``: the same for bf16 / fp16 / fp8 files; for a GGUF denoiser, whose weights stay quantized
    on the GPU (about the file's size), "fast" and "balanced" need the bf16 size less, the file's
    more; "low" (one part on the GPU at a time: the denoiser in fp8 storage, half its bf16 size, or
    the GGUF as it is) needs the larger of the file and ``other_gb``, the largest other part in
    "low", plus the same working memory. Without this, auto planned a Q4 FLUX.1 (6.8 GB) as if it
    were 23.8 GB of bf16 and streamed it layer by layer on a 12 GB card."""
    if getattr(info, "format", "") != "gguf" or not getattr(info, "size_bytes", 0):
        return thresholds
    file_gb = info.size_bytes / 1e9  # GB, as the families' tables count
    out, ceiling = [], float("inf")
    for preset, need in thresholds:
        if preset == "low":
            working = need - max(denoiser_gb / 2, other_gb)
            need = max(file_gb, other_gb) + working
        else:
            need = need - denoiser_gb + file_gb
        ceiling = min(ceiling, round(need, 1))  # a lower preset never needs more than a higher one
        out.append((preset, ceiling))
    return tuple(out)


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


def bf16_for_fp16(device: str, dtype):
    """``dtype``, or bf16 where it is fp16 and ``device`` has bf16: for the models trained in bf16
    whose activations overflow fp16 into black images (Z-Image, Qwen-Image)."""
    import torch

    if dtype != torch.float16:
        return dtype
    kind = device.split(":")[0]
    if kind == "mps" or (kind == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return dtype


def free_memory_gib(device: str) -> float | None:
    """Free memory on ``device`` in GiB, or None where it cannot be told (CPU, MPS)."""
    import torch

    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return free / 2**30
    return None


def resolve_preset(name: str, device: str, thresholds=None, free_gib: float | None = None) -> str:
    """Turn ``auto`` into a concrete preset for this device: the first preset whose free-memory
    threshold (``thresholds``: ((preset, GiB), ...), a family's capability) the device meets."""
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
    for preset, need in thresholds or DEFAULT_THRESHOLDS_GIB:
        if free_gib >= need:
            return preset
    return "minimal"


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


def fp8_by_preset(preset_name: str, device: str) -> bool:
    """Whether the preset keeps the transformer and T5 in fp8 storage on this device (CUDA only:
    elsewhere the memory is system RAM and the rounding would buy nothing)."""
    return PRESETS[preset_name].fp8_storage and device.split(":")[0] == "cuda"


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

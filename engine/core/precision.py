"""fp8 storage (layerwise casting) for the big transformers and the T5 and Mistral 3 text encoders.

A transformer or T5 kept in ``float8_e4m3fn`` takes a quarter of its fp32 memory (half of bf16):
each layer's weights are cast up to the run's precision (bf16/fp16 on a GPU, fp32 on the CPU) just
for its forward pass (diffusers' ``apply_layerwise_casting``), norms, embeddings and the patch/proj
layers stay in the run's precision (diffusers' default skip patterns plus the model's own).

Two reasons put a module in fp8 storage, both decided here once for every family:

- its weights are fp8 values already (an fp8 checkpoint, read and upcast by the loader): every
  weight matrix sampled round-trips exactly through ``float8_e4m3fn``, so storing it in fp8 loses
  nothing at all;
- the memory preset asks for it (``engine.devices.PRESETS``: "low" and "minimal" on CUDA), where it is
  the memory saver that keeps the model usable: the weights are then rounded to fp8 (a small quality
  cost, recorded in the run's settings as "fp8 storage").

LoRAs (peft adapters, ``engine.core.loras``) on a module in fp8 storage keep the run's precision, whichever
comes first: adapter layers are never cast to fp8 (``_ADAPTERS``), and each cast layer says its
``compute_dtype``, which peft makes the adapters it adds later in (as for bitsandbytes layers), so a
LoRA is neither rounded to fp8 nor run in it.

Only the module named ``transformer``, T5 encoders and FLUX.2 [dev]'s Mistral 3 Small (24B, the
largest part of that model after its transformer) are cast (SD's UNets, CLIP, the VAE and the Qwen
language-model encoders keep their precision); quantized (GGUF) modules are left as they are.
Once a module is in fp8 storage it stays so (its weights no longer hold more than fp8 can).
Engine thread.
"""

from __future__ import annotations

FP8 = "float8_e4m3fn"
_T5 = ("T5EncoderModel", "UMT5EncoderModel")
# A transformers model tells its dtype by its first parameter (the T5's token embedding), and the
# pipelines cast the prompt embeddings to it: that one stays in the run's precision.
_T5_SKIP = ("^shared$", "embed_tokens")
# Mistral 3 the same (its token embedding first), and the vision half FLUX.2 [dev] never runs.
_MISTRAL = ("MistralModel", "Mistral3ForConditionalGeneration")
_MISTRAL_SKIP = ("embed_tokens", "vision_tower", "multi_modal_projector")
_SAMPLED = 4  # weight matrices checked for fp8 values
# peft's adapter layers (``…to_q.lora_A.<adapter>``, ``lora_B``, ``lora_magnitude_vector``, ``lora_embedding_A``…)
_ADAPTERS = ("lora_",)


def eligible(name: str, module) -> bool:
    """Whether fp8 storage applies to the pipeline component ``name``: the denoising transformer, a
    T5 encoder or a Mistral 3 one, not quantized."""
    import torch

    if not isinstance(module, torch.nn.Module):
        return False
    if name != "transformer" and type(module).__name__ not in _T5 + _MISTRAL:
        return False
    return getattr(module, "hf_quantizer", None) is None and not getattr(module, "is_quantized", False)


def is_stored(module) -> bool:
    """Whether ``module`` is in fp8 storage (this module's doing or anyone's)."""
    return bool(getattr(module, "_easel_fp8", False))


def holds_fp8_values(module) -> bool:
    """Whether the module's weight matrices hold fp8 values only (it was read from an fp8 file): the
    first few non-zero Linear weights round-trip exactly through ``float8_e4m3fn``. Cached on the module."""
    import torch

    cached = getattr(module, "_easel_fp8_values", None)
    if cached is not None:
        return cached
    fp8 = getattr(torch, FP8)
    checked, exact = 0, True
    with torch.no_grad():
        for sub in module.modules():
            if not isinstance(sub, torch.nn.Linear) or sub.weight.device.type == "meta":
                continue
            weight = sub.weight
            if not weight.is_floating_point() or not bool(weight.any()):
                continue
            if not torch.equal(weight.to(fp8).to(weight.dtype), weight):
                exact = False
                break
            checked += 1
            if checked >= _SAMPLED:
                break
    result = exact and checked > 0
    module._easel_fp8_values = result
    return result


def store_fp8(module, compute_dtype) -> None:
    """Keep ``module``'s layers in fp8, each cast to ``compute_dtype`` while it runs."""
    import torch
    from diffusers.hooks import apply_layerwise_casting
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    if is_stored(module):
        return
    skip = set(DEFAULT_SKIP_MODULES_PATTERN)
    skip.update(getattr(module, "_keep_in_fp32_modules", None) or ())  # T5's "wo" in fp16 runs
    skip.update(getattr(module, "_skip_layerwise_casting_patterns", None) or ())
    if type(module).__name__ in _T5:
        skip.update(_T5_SKIP)
    if type(module).__name__ in _MISTRAL:
        skip.update(_MISTRAL_SKIP)
    skip.update(_ADAPTERS)
    fp8 = getattr(torch, FP8)
    apply_layerwise_casting(module, storage_dtype=fp8, compute_dtype=compute_dtype,
                            skip_modules_pattern=tuple(sorted(skip)))
    for layer in module.modules():
        if getattr(getattr(layer, "weight", None), "dtype", None) == fp8:
            layer.compute_dtype = compute_dtype  # what peft creates a LoRA's layers on it in
    module._easel_fp8 = True


def apply(pipe, device: str, compute_dtype, by_preset: bool) -> tuple[str, ...]:
    """Put ``pipe``'s eligible components in fp8 storage where their weights are fp8 values or
    ``by_preset`` asks for it; returns the names of the components in fp8 storage (sorted). Not on
    Apple MPS (no float8 there)."""
    components = getattr(pipe, "components", None)
    if not isinstance(components, dict) or device.split(":")[0] == "mps":
        return ()
    stored = []
    for name, module in components.items():
        if not eligible(name, module):
            continue
        if not is_stored(module) and (by_preset or holds_fp8_values(module)):
            store_fp8(module, compute_dtype)
        if is_stored(module):
            stored.append(name)
    return tuple(sorted(stored))


def parameter_bytes(module) -> int:
    """Bytes the module's parameters take as stored."""
    return sum(p.numel() * p.element_size() for p in module.parameters())

"""Tiny random LoRAs for the transformer families (FLUX.1, FLUX.2, SD 3.5, Z-Image, Qwen-Image), built from a
tiny test model's actual module shapes, in the layouts users have. Kept apart from ``engine.testaddons``
because writing the original (BFL / Stability) names needs those families' converters, and the SD family
itself uses ``engine.testaddons`` (the import-linter contract keeps families independent)."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.testaddons import TEXT_ATTENTION
from engine.testmodels import save_safetensors

_BLOCKS = ("transformer_blocks.", "single_transformer_blocks.", "layers.", "noise_refiner.", "context_refiner.")
TRANSFORMER_LORA_LAYOUTS = ("diffusers", "comfyui", "kohya")


def make_transformer_lora(dest: Path, model: Path, layout: str = "diffusers", seed: int = 1, rank: int = 4,
                          scale: float = 0.3, clip: bool = False) -> Path:
    """A random LoRA on the linear layers of the blocks of the tiny diffusers-folder ``model``'s
    transformer (FLUX.1, SD 3.5, Z-Image, Qwen-Image), made from its actual module shapes, in ``layout``:
    "diffusers" (``transformer.<layer>.lora_A/B``); "comfyui" (``diffusion_model.<layer>.lora_A/B`` in the
    model's original names: Black Forest Labs' ``double_blocks.0.img_attn.qkv`` for FLUX.1, Stability's
    ``joint_blocks.0.x_block.attn.qkv`` for SD 3.5, the diffusers names for the others); "kohya"
    (``lora_unet_<original name with _>.lora_down/up`` + ``alpha``; FLUX.1 and SD 3.5; ``clip``: with
    layers on the model's CLIP-L text encoder too: ``lora_te1_``, ComfyUI's ``text_encoders.clip_l.transformer.``,
    diffusers' ``text_encoder.``)."""
    import json

    import diffusers

    folder = Path(model) / "transformer"
    cls = json.loads((folder / "config.json").read_text(encoding="utf-8"))["_class_name"]
    transformer = getattr(diffusers, cls).from_pretrained(folder)
    original = layout == "kohya" or (layout == "comfyui" and cls in _ORIGINAL_NAMES)
    weights = _ORIGINAL_NAMES[cls](model, transformer) if original else _block_weights(transformer)
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    if clip:
        from transformers import CLIPTextModel

        encoder = CLIPTextModel.from_pretrained(Path(model) / "text_encoder")
        weights.update({f"te1:{name}.weight": m.weight.detach() for name, m in encoder.named_modules()
                        if name.endswith(TEXT_ATTENTION)})
    for key, weight in sorted(weights.items()):
        out_f, in_f = weight.shape
        down, up = torch.randn(rank, in_f, generator=g) * scale, torch.randn(out_f, rank, generator=g) * scale
        name = key.removesuffix(".weight")
        if layout == "kohya":
            te = name.startswith("te1:")
            name = ("lora_te1_" if te else "lora_unet_") + name.removeprefix("te1:").replace(".", "_")
            tensors.update({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up,
                            f"{name}.alpha": torch.tensor(float(rank))})
        else:
            if name.startswith("te1:"):  # CLIP-L, as ComfyUI names it
                prefix, name = ("text_encoders.clip_l.transformer." if layout == "comfyui" else "text_encoder."), name[4:]
            else:
                prefix = {"diffusers": "transformer.", "comfyui": "diffusion_model."}[layout]
            tensors.update({f"{prefix}{name}.lora_A.weight": down, f"{prefix}{name}.lora_B.weight": up})
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(dest, tensors)
    return dest


def _block_weights(transformer) -> dict:
    return {f"{name}.weight": m.weight.detach() for name, m in transformer.named_modules()
            if isinstance(m, torch.nn.Linear) and name.startswith(_BLOCKS)}


def _flux_original(_model: Path, transformer) -> dict:
    from engine.families.flux.convert import diffusers_to_bfl

    # Fused q/k/v as FLUX's files have them. Not the single blocks' fused q/k/v/MLP ``linear1``: diffusers'
    # converter splits that at the full-size widths (3072 x 3 + 12288), which a tiny model does not have.
    return {k: v for k, v in diffusers_to_bfl(_block_weights(transformer)).items() if ".linear1." not in k}


def _sd3_original(model: Path, _transformer) -> dict:
    import re

    from diffusers import StableDiffusion3Pipeline

    from engine.families.sd3.loras import LAYERS
    from engine.families.sd3.testmodel import original_layout

    full = original_layout(StableDiffusion3Pipeline.from_pretrained(model))  # Stability's names, as its files have them
    return {k.removeprefix("model.diffusion_model."): v for k, v in full.items()
            if (m := re.match(r"model\.diffusion_model\.joint_blocks\.\d+\.(.+)\.weight$", k)) and m.group(1) in LAYERS}


_ORIGINAL_NAMES = {"FluxTransformer2DModel": _flux_original, "SD3Transformer2DModel": _sd3_original}

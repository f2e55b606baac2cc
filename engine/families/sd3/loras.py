"""SD 3.5 LoRAs in Stability's original MMDiT layer names, which diffusers' SD3 loader does not
convert: kohya sd-scripts' ``lora_unet_joint_blocks_0_x_block_attn_qkv`` (``lora_down`` / ``lora_up``
/ ``alpha``) and ComfyUI's ``diffusion_model.joint_blocks.0.x_block.attn.qkv`` (``lora_A`` / ``lora_B``
or ``lora_down`` / ``lora_up``). They become diffusers' PEFT names
(``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``): a fused q/k/v layer's LoRA is three
LoRAs with the same down matrix and the up matrix cut in three, alpha / rank is folded into the down
matrix, and the last block's context modulation has its (shift, scale) halves swapped, as diffusers'
checkpoint converter does to the weights. Text-encoder layers of such files (``lora_te1_`` …) are not
converted (diffusers' loader passes them by). Engine thread.
"""

from __future__ import annotations

import re

# original MMDiT layer (in a joint block) -> the diffusers layer(s) it is, q/k/v order kept
LAYERS = {
    "x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "x_block.attn.proj": ("attn.to_out.0",),
    "x_block.attn2.qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
    "x_block.attn2.proj": ("attn2.to_out.0",),
    "x_block.mlp.fc1": ("ff.net.0.proj",),
    "x_block.mlp.fc2": ("ff.net.2",),
    "x_block.adaLN_modulation.1": ("norm1.linear",),
    "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "context_block.attn.proj": ("attn.to_add_out",),
    "context_block.mlp.fc1": ("ff_context.net.0.proj",),
    "context_block.mlp.fc2": ("ff_context.net.2",),
    "context_block.adaLN_modulation.1": ("norm1_context.linear",),
}
_UNDERSCORED = {name.replace(".", "_"): name for name in LAYERS}
_KEY = re.compile(r"^(?:lora_unet_|model\.diffusion_model\.|diffusion_model\.)joint_blocks[._](\d+)[._](.+?)"
                  r"\.(lora_down|lora_up|lora_A|lora_B|alpha)(?:\.weight)?$")


def is_original(names) -> bool:
    """Whether a LoRA's tensor ``names`` use the original MMDiT layer names."""
    return any(_KEY.match(k) for k in names)


def to_diffusers(tensors: dict, layers: int) -> dict:
    """``tensors`` of an original-names LoRA for a ``layers``-block SD 3.5 transformer, in diffusers'
    PEFT names (what ``StableDiffusion3Pipeline.load_lora_weights`` reads)."""
    import torch

    parts: dict[tuple[int, str], dict] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None:
            continue
        layer = _UNDERSCORED.get(m.group(2).replace(".", "_"))
        if layer is not None:
            role = {"lora_down": "down", "lora_A": "down", "lora_up": "up", "lora_B": "up"}.get(m.group(3), "alpha")
            parts.setdefault((int(m.group(1)), layer), {})[role] = value
    out = {}
    for (block, layer), p in sorted(parts.items()):
        if "down" not in p or "up" not in p:
            continue
        down, up = p["down"], p["up"]
        if "alpha" in p:  # kohya scales by alpha / rank in its forward pass; PEFT's default is 1
            down = down * (float(p["alpha"]) / down.shape[0])
        if block == layers - 1 and layer == "context_block.adaLN_modulation.1":
            shift, scale = up.chunk(2, dim=0)
            up = torch.cat([scale, shift], dim=0)
        targets = LAYERS[layer]
        for target, piece in zip(targets, up.chunk(len(targets), dim=0)):
            name = f"transformer.transformer_blocks.{block}.{target}"
            out[f"{name}.lora_A.weight"] = down.contiguous()
            out[f"{name}.lora_B.weight"] = piece.contiguous()
    return out


def source(path: str, layers: int):
    """What ``load_lora_weights`` is given for the LoRA file ``path``: its tensors in diffusers' names
    when it uses the original ones, else the path itself."""
    from engine.files.headers import read_header

    if not is_original(read_header(path).tensors):
        return path
    from safetensors.torch import load_file

    return to_diffusers(load_file(path), layers)

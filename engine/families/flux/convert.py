"""FLUX.1 transformer weights between Black Forest Labs' names (the released ``flux1-*.safetensors``,
ComfyUI's ``diffusion_models`` files and city96's GGUF files: ``double_blocks.N.img_attn.qkv`` ...,
optionally under ``model.diffusion_model.``) and diffusers' ``FluxTransformer2DModel`` names.

diffusers' own converter assumes the full-size width (3072); this one reads every size from the
tensors, so a tiny test transformer converts exactly like the release. Renames, the fused q/k/v
(and single blocks' q/k/v/MLP) projections split or joined along their output rows, and the final
norm's (shift, scale) halves swapped. Tensors may be torch tensors or diffusers' GGUF parameters
(quantized rows split cleanly: GGUF blocks run along each row). Calling thread.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "model.diffusion_model."

_TOP = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
_DOUBLE = {
    "img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight", "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2", "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2", "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
}
_SINGLE = {
    "modulation.lin": "norm.linear", "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight", "linear2": "proj_out",
}
_QKV = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
        "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
_LINEAR1 = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
_NORM_OUT = ("final_layer.adaLN_modulation.1", "norm_out.linear")


def _rename(rest: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if rest == old:
            return new
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    return None


def _swap_halves(t):
    import torch

    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _rows(t) -> int:
    shape = getattr(t, "quant_shape", None) or t.shape
    return shape[0]


def bfl_to_diffusers(checkpoint: Mapping) -> dict:
    """BFL / ComfyUI FLUX.1 transformer weights -> a FluxTransformer2DModel state dict. Raises
    ValueError naming the first tensor it does not know (nothing is dropped silently)."""
    import torch

    sd = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in checkpoint.items()}
    inner = _rows(sd["img_in.weight"])
    out: dict = {}
    for key, value in sd.items():
        head, _, rest = key.partition(".")
        if key.startswith(_NORM_OUT[0] + "."):
            out[_NORM_OUT[1] + key[len(_NORM_OUT[0]):]] = _swap_halves(value)
            continue
        if head in ("double_blocks", "single_blocks"):
            index, _, rest = rest.partition(".")
            block = f"{'transformer_blocks' if head == 'double_blocks' else 'single_transformer_blocks'}.{index}."
            if head == "double_blocks":
                fused = next((f for f in _QKV if rest.startswith(f + ".")), None)
                if fused is not None:
                    suffix = rest[len(fused):]
                    for name, part in zip(_QKV[fused], torch.chunk(value, 3, dim=0)):
                        out[block + name + suffix] = part
                    continue
                new = _rename(rest, _DOUBLE)
            else:
                if rest.startswith("linear1."):
                    sizes = (inner, inner, inner, _rows(value) - 3 * inner)
                    for name, part in zip(_LINEAR1, torch.split(value, sizes, dim=0)):
                        out[block + name + rest[len("linear1"):]] = part
                    continue
                new = _rename(rest, _SINGLE)
            if new is None:
                raise ValueError(f"unknown FLUX transformer tensor {key}")
            out[block + new] = value
            continue
        new = _rename(key, _TOP)
        if new is None:
            raise ValueError(f"unknown FLUX transformer tensor {key}")
        out[new] = value
    return out


def diffusers_to_bfl(state_dict: Mapping) -> dict:
    """The inverse of ``bfl_to_diffusers`` (writes test files in the released layout)."""
    import torch

    top = {v: k for k, v in _TOP.items()}
    double = {v: k for k, v in _DOUBLE.items()}
    single = {v: k for k, v in _SINGLE.items()}
    out: dict = {}
    pending: dict = {}
    for key, value in state_dict.items():
        if key.startswith(_NORM_OUT[1] + "."):
            out[_NORM_OUT[0] + key[len(_NORM_OUT[1]):]] = _swap_halves(value)
            continue
        head, _, rest = key.partition(".")
        if head in ("transformer_blocks", "single_transformer_blocks"):
            index, _, rest = rest.partition(".")
            name, _, leaf = rest.rpartition(".")
            bfl = f"{'double_blocks' if head == 'transformer_blocks' else 'single_blocks'}.{index}."
            if head == "transformer_blocks":
                fused = next((f for f, parts in _QKV.items() if name in parts), None)
                if fused is not None:
                    pending.setdefault(f"{bfl}{fused}.{leaf}", {})[_QKV[fused].index(name)] = value
                    continue
                new = _rename(rest, double)
            else:
                if name in _LINEAR1:
                    pending.setdefault(f"{bfl}linear1.{leaf}", {})[_LINEAR1.index(name)] = value
                    continue
                new = _rename(rest, single)
            if new is None:
                raise ValueError(f"unknown diffusers FLUX tensor {key}")
            out[bfl + new] = value
            continue
        new = _rename(key, top)
        if new is None:
            raise ValueError(f"unknown diffusers FLUX tensor {key}")
        out[new] = value
    for key, parts in pending.items():
        out[key] = torch.cat([parts[i] for i in sorted(parts)], dim=0)
    return out

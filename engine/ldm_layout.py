"""diffusers weights -> the original single-file layout (LDM / A1111 / ComfyUI checkpoints).

Real ``.safetensors`` checkpoints keep the key names of the original Stable Diffusion code:

* UNet under ``model.diffusion_model.``: ``input_blocks.N.{0 resnet | 1 attention | 0.op downsample}``,
  ``middle_block.{0,1,2}``, ``output_blocks.N.{0 resnet | 1 attention | 1 or 2 .conv upsample}``,
  ``time_embed.{0,2}``, ``label_emb.0.{0,2}`` (SDXL), ``out.{0,2}``; resnets name their layers
  ``in_layers.{0,2}``, ``emb_layers.1``, ``out_layers.{0,3}``, ``skip_connection``.
* VAE under ``first_stage_model.``: ``encoder.down.I.block.J``, ``decoder.up.I.block.J`` with up
  levels numbered from the bottom (the reverse of diffusers), ``mid.block_{1,2}``, ``mid.attn_1``
  whose q/k/v/proj_out are 1x1 convolutions (shape [C, C, 1, 1]), ``nin_shortcut``, ``norm_out``.
* CLIP-L text encoder (SD1, SDXL's first) in Hugging Face naming under
  ``cond_stage_model.transformer.text_model.`` (SD1) or ``conditioner.embedders.0.transformer.text_model.``.
* OpenCLIP text encoder (SD2, SDXL's second) under ``cond_stage_model.model.`` (SD2) or
  ``conditioner.embedders.1.model.``: ``token_embedding``, ``positional_embedding``,
  ``transformer.resblocks.N.{ln_1, ln_2, attn.in_proj_weight/bias (q, k, v stacked), attn.out_proj,
  mlp.c_fc, mlp.c_proj}``, ``ln_final``, ``text_projection`` (a matrix used as ``x @ P``: the
  transpose of the Hugging Face linear weight).

Used to write test checkpoints; diffusers' own converters (``diffusers.loaders.single_file_utils``)
read them back, which is how the tests check this module. Any diffusers key this module does not know
raises ValueError: nothing is dropped silently.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import torch

from engine.architectures import CLIP_L_PREFIX, OPEN_CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX

Tensor = torch.Tensor

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _split(key: str, names: Mapping[str, str], where: str) -> str:
    """Rename the leading module of ``key`` (``norm1.weight`` -> ``in_layers.0.weight``)."""
    for old, new in names.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    raise ValueError(f"unknown {where} key {key!r}")


def unet_to_original(state_dict: Mapping[str, Tensor], layers_per_block: int) -> dict[str, Tensor]:
    """diffusers UNet2DConditionModel weights -> original keys (without ``model.diffusion_model.``)."""
    per = layers_per_block + 1
    up_has_attention = {int(m.group(1)) for k in state_dict if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, kind, j, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            if j >= layers_per_block:
                raise ValueError(f"{key}: more layers than layers_per_block={layers_per_block}")
            new = f"input_blocks.{1 + block * per + j}." + (
                "0." + _split(rest, _RESNET, "resnet") if kind == "resnets" else "1." + rest
            )
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{(int(m.group(1)) + 1) * per}.0.op.{m.group(2)}"
        elif m := re.match(r"mid_block\.resnets\.([01])\.(.+)", key):
            new = f"middle_block.{2 * int(m.group(1))}." + _split(m.group(2), _RESNET, "resnet")
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m.group(1)}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, kind, j, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            if j >= per:
                raise ValueError(f"{key}: more layers than layers_per_block + 1 = {per}")
            new = f"output_blocks.{block * per + j}." + (
                "0." + _split(rest, _RESNET, "resnet") if kind == "resnets" else "1." + rest
            )
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            block = int(m.group(1))
            slot = 2 if block in up_has_attention else 1
            new = f"output_blocks.{block * per + layers_per_block}.{slot}.conv.{m.group(2)}"
        else:
            new = _split(key, _UNET_TOP, "UNet")
        out[new] = value
    return out


def vae_to_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """diffusers AutoencoderKL weights -> original keys (without ``first_stage_model.``)."""
    n_up = len({int(m.group(1)) for k in state_dict if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))})
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m.group(1)}.block.{m.group(2)}.{_vae_resnet(m.group(3))}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"encoder.down.{m.group(1)}.downsample.conv.{m.group(2)}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.up.{n_up - 1 - int(m.group(1))}.block.{m.group(2)}.{_vae_resnet(m.group(3))}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            new = f"decoder.up.{n_up - 1 - int(m.group(1))}.upsample.conv.{m.group(2)}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)", key):
            new = f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}.{_vae_resnet(m.group(3))}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            rest = _split(m.group(2), _VAE_ATTN, "VAE attention")
            if rest.split(".")[0] in ("q", "k", "v", "proj_out") and rest.endswith(".weight") and value.ndim == 2:
                value = value[:, :, None, None]  # linear -> 1x1 convolution, as the original stores it
            new = f"{m.group(1)}.mid.attn_1.{rest}"
        elif m := re.match(r"(encoder|decoder)\.(conv_in|conv_out|conv_norm_out)\.(.+)", key):
            name = "norm_out" if m.group(2) == "conv_norm_out" else m.group(2)
            new = f"{m.group(1)}.{name}.{m.group(3)}"
        elif re.match(r"(quant_conv|post_quant_conv)\.", key):
            new = key
        else:
            raise ValueError(f"unknown VAE key {key!r}")
        out[new] = value
    return out


def _vae_resnet(rest: str) -> str:
    if rest.split(".")[0] in ("norm1", "conv1", "norm2", "conv2"):
        return rest
    if rest.startswith("conv_shortcut."):
        return "nin_shortcut" + rest[len("conv_shortcut"):]
    raise ValueError(f"unknown VAE resnet key {rest!r}")


def _text_model_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CLIP text weights keyed without the ``text_model.`` wrapper (transformers >= 5.6 drops it on
    CLIPTextModel, keeps it on CLIPTextModelWithProjection); buffers such as position_ids left out."""
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("text_model.")
        if key.endswith("position_ids"):
            continue
        out[key] = value
    return out


def clip_l_to_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CLIPTextModel weights -> original keys (``text_model.`` ..., without the embedder prefix)."""
    out = {}
    for key, value in _text_model_keys(state_dict).items():
        if key == "text_projection.weight":
            raise ValueError("a CLIP-L text encoder with a projection has no place in SD1/SDXL checkpoints")
        out["text_model." + key] = value
    return out


_OPEN_CLIP_TOP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def open_clip_to_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CLIPTextModel(WithProjection) weights -> OpenCLIP keys (without ``cond_stage_model.model.``)."""
    sd = _text_model_keys(state_dict)
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, value in sd.items():
        if key in _OPEN_CLIP_TOP:
            out[_OPEN_CLIP_TOP[key]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            qkv.setdefault((int(m.group(1)), m.group(3)), {})[m.group(2)] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.+)", key):
            out[f"transformer.resblocks.{m.group(1)}." + _split(m.group(2), _OPEN_CLIP_LAYER, "OpenCLIP layer")] = value
        else:
            raise ValueError(f"unknown text encoder key {key!r}")
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"text encoder layer {layer} lacks one of q/k/v {kind}")
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def _state_dict(module: Any) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in module.state_dict().items()}


def _family_of(components: Mapping[str, Any]) -> str:
    if components.get("text_encoder_2") is not None:
        return "sdxl"
    act = getattr(components["text_encoder"].config, "hidden_act", "quick_gelu")
    return "sd2" if act == "gelu" else "sd1"


def to_original_layout(pipe_components: Any, family: str | None = None) -> dict[str, Tensor]:
    """All weights of a pipeline in the original single-file layout, prefixed as real checkpoints are.

    ``pipe_components`` is a pipeline or its ``components`` dict (unet, vae, text_encoder,
    [text_encoder_2]; tokenizers, scheduler and absent parts are ignored). ``family`` "sd1" | "sd2" |
    "sdxl" is inferred when left out (a second text encoder means SDXL; a GELU encoder means SD2).
    Tensors are shared with the modules where the layout allows (no copy); dtypes are kept.
    """
    components = getattr(pipe_components, "components", pipe_components)
    family = family or _family_of(components)
    unet, vae = components["unet"], components["vae"]
    lpb = unet.config.layers_per_block
    if not isinstance(lpb, int):
        raise ValueError("per-block layers_per_block has no original layout")

    out: dict[str, Tensor] = {}

    def add(prefix: str, converted: dict[str, Tensor]) -> None:
        for key, value in converted.items():
            out[prefix + key] = value

    add(UNET_PREFIX, unet_to_original(_state_dict(unet), lpb))
    add(VAE_PREFIX, vae_to_original(_state_dict(vae)))
    encoders: list[tuple[str, str, Callable[[Mapping[str, Tensor]], dict[str, Tensor]]]]
    if family == "sd1":
        encoders = [("text_encoder", CLIP_L_PREFIX["sd1"], clip_l_to_original)]
    elif family == "sd2":
        encoders = [("text_encoder", OPEN_CLIP_PREFIX["sd2"], open_clip_to_original)]
    elif family == "sdxl":
        encoders = [
            ("text_encoder", CLIP_L_PREFIX["sdxl"], clip_l_to_original),
            ("text_encoder_2", OPEN_CLIP_PREFIX["sdxl"], open_clip_to_original),
        ]
    else:
        raise ValueError(f"unknown family {family!r}")
    for name, prefix, convert in encoders:
        if components.get(name) is None:
            raise ValueError(f"{family} needs a {name}")
        add(prefix, convert(_state_dict(components[name])))
    return out

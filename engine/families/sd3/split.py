"""SD 3.5 from ComfyUI's split layout: the MMDiT transformer alone (``diffusion_models/sd3.5_large.safetensors``,
a GGUF of it such as city96's ``sd3.5_large-Q4_0.gguf``, or Stability's ``checkpoints/sd3.5_large.safetensors``
that carries the VAE beside it), CLIP-L and CLIP-G (``text_encoders/clip_l.safetensors``,
``clip_g.safetensors``), the optional T5-XXL (``t5xxl_fp16.safetensors``: without it, or without its
tokenizer, the model runs on its CLIP encoders with a notice) and the SD 3.5 VAE (inside the checkpoint,
or ``vae/sd3.5_vae.safetensors``), found by ``engine.files.split`` and assembled into one
StableDiffusion3Pipeline offline.

Each config is the variant's bundled real one (``configs``) with every size the tensors tell put in.
Engine thread (imports torch, diffusers, transformers).
"""

from __future__ import annotations

from engine.api import ModelInfo
from engine.core import parts
from engine.families.sd3 import configs
from engine.files import split


def denoiser(info: ModelInfo) -> split.Part:
    return split.Part("transformer", "sd3", info.variant, info.path)


def _key(shapes: dict) -> str:
    return "large" if configs.variant_of(shapes) == "large" else "medium"


def transformer_config(shapes: dict) -> dict:
    """SD3Transformer2DModel's config for original-layout (MMDiT) tensors of these shapes."""
    config = configs.bundled(_key(shapes))["transformer"]
    config.update(configs.transformer_sizes(shapes))
    return config


def _clip(part: split.Part, bundled: dict, dtype):
    """A CLIPTextModelWithProjection from a CLIP file (Hugging Face names, with or without ``text_model.``);
    CLIP-L files without a projection get the identity, as diffusers gives SD 3's single files."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    state = {}
    for key, value in parts.tensors(part.path, part.prefix).items():
        if key.endswith("position_ids"):
            continue
        state[key if key.startswith(("text_model.", "text_projection.")) else "text_model." + key] = value
    shapes = parts.shapes_of(state)
    config = {k: v for k, v in bundled.items() if not k.startswith("_")}
    config.update(configs.clip_sizes(shapes, ""))
    if "text_projection.weight" not in state:
        state["text_projection.weight"] = torch.eye(config["hidden_size"], dtype=state[
            "text_model.embeddings.token_embedding.weight"].dtype)
    return parts.text_encoder(CLIPTextModelWithProjection, CLIPTextConfig(**config), state, dtype)


def _t5(part: split.Part, bundled: dict, dtype):
    from transformers import T5Config, T5EncoderModel

    state = parts.tensors(part.path, part.prefix)
    if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    config = {k: v for k, v in bundled.items() if not k.startswith("_")}
    config.update(configs.t5_sizes(parts.shapes_of(state), ""))
    return parts.text_encoder(T5EncoderModel, T5Config(**config), state, dtype)


def _vae(part: split.Part, bundled: dict, dtype):
    """The SD 3.5 VAE, in the original (LDM) names as checkpoints hold it, or in diffusers' names (the
    ``vae/diffusion_pytorch_model.safetensors`` of Stability's repo, renamed)."""
    from diffusers import AutoencoderKL

    state = parts.tensors(part.path, part.prefix)
    config = {k: v for k, v in bundled.items() if not k.startswith("_")}
    shapes = parts.shapes_of(state)
    if "encoder.down.0.block.0.conv1.weight" in shapes:
        return parts.from_single_file(AutoencoderKL, state, parts.sized_vae_config(config, shapes), "vae", dtype)
    levels = parts.count(shapes, r"encoder\.down_blocks\.(\d+)\.")
    widths = [shapes[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"][0] for i in range(levels)]
    config.update(block_out_channels=widths, latent_channels=shapes["decoder.conv_in.weight"][1],
                  layers_per_block=parts.count(shapes, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
                  norm_num_groups=min(32, min(widths)), down_block_types=["DownEncoderBlock2D"] * levels,
                  up_block_types=["UpDecoderBlock2D"] * levels)
    vae = AutoencoderKL(**config)
    vae.load_state_dict(state, strict=True)
    return vae.to(dtype).eval()


def has_t5(info: ModelInfo) -> bool:
    """Whether the split-layout model ``info`` finds its (optional) T5-XXL encoder and tokenizer."""
    found, _missing = split.find_optional(denoiser(info))
    return "t5xxl" in found


def load_split(info: ModelInfo, dtype) -> tuple[object, tuple[str, ...]]:
    """(pipeline, load notices) for the split-layout model whose transformer is ``info.path``
    (``.safetensors`` or ``.gguf``). Raises ModelError (split.MissingPart) naming a missing required part."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import T5TokenizerFast

    from engine.tokenizers import bundled_tokenizer

    part = denoiser(info)
    found = split.find_parts(part)  # raises MissingPart
    optional, notices = split.find_optional(part)
    transformer = parts.transformer(SD3Transformer2DModel, info.path, transformer_config, dtype)
    bundled = configs.bundled("large" if transformer.config.qk_norm and not transformer.config.dual_attention_layers
                              else "medium")
    t5 = tokenizer_3 = None
    if "t5xxl" in optional:
        t5 = _t5(optional["t5xxl"], bundled["text_encoder_3"], dtype)
        tokenizer_3 = T5TokenizerFast.from_pretrained(str(split.find_tokenizer("t5xxl", info.path)),
                                                      local_files_only=True)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, vae=_vae(found["sd3-vae"], bundled["vae"], dtype),
        text_encoder=_clip(found["clip_l"], bundled["text_encoder"], dtype), tokenizer=bundled_tokenizer("clip"),
        text_encoder_2=_clip(found["clip_g"], bundled["text_encoder_2"], dtype),
        tokenizer_2=bundled_tokenizer("clip-pad-bang"), text_encoder_3=t5, tokenizer_3=tokenizer_3,
        scheduler=FlowMatchEulerDiscreteScheduler(**{k: v for k, v in bundled["scheduler"].items()
                                                     if not k.startswith("_")}))
    return pipe, notices

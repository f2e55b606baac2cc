"""FLUX.1 from ComfyUI's split layout: a transformer file (BFL names) plus CLIP-L, T5-XXL and the
16-channel VAE found by ``engine.files.split`` (separate files, or inside one all-in-one checkpoint),
assembled into one FluxPipeline offline.

Each component's config is the bundled real one (``resources/configs/flux1-<variant>``) with every
size the tensors tell put in; what shapes cannot tell follows one fixed rule, the same the tiny
test models are built with: rope axes (h/8, 7h/16, 7h/16) of the head width h (FLUX.1: 16, 56, 56),
VAE group norms min(32, narrowest level), CLIP heads of 64 channels (4 for widths below 64).
Engine thread (imports torch, diffusers, transformers).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from engine.api import ModelInfo
from engine.core import parts
from engine.core.parts import count, tensors
from engine.files import split
from engine.paths import resources_dir

_PREFIX = split.DIFFUSION_PREFIX


def _config(variant: str, part: str) -> dict:
    name = "scheduler_config.json" if part == "scheduler" else "config.json"
    return json.loads((resources_dir() / "configs" / f"flux1-{variant}" / part / name).read_text(encoding="utf-8"))




def transformer_config(shapes: dict, variant: str) -> dict:
    """The FluxTransformer2DModel config for a BFL-named transformer with these tensor shapes."""
    shapes = {(k[len(_PREFIX):] if k.startswith(_PREFIX) else k): v for k, v in shapes.items()}
    config = _config("schnell" if variant == "schnell" else "dev", "transformer")
    inner, in_channels = shapes["img_in.weight"][0], shapes["img_in.weight"][-1]
    head = shapes["double_blocks.0.img_attn.norm.query_norm.scale"][0]
    config.update(
        in_channels=in_channels, attention_head_dim=head, num_attention_heads=inner // head,
        num_layers=count(shapes, r"double_blocks\.(\d+)\."), num_single_layers=count(shapes, r"single_blocks\.(\d+)\."),
        joint_attention_dim=shapes["txt_in.weight"][-1], pooled_projection_dim=shapes["vector_in.in_layer.weight"][-1],
        guidance_embeds="guidance_in.in_layer.weight" in shapes,
        axes_dims_rope=[head // 8, 7 * head // 16, 7 * head // 16],
        out_channels=shapes["final_layer.linear.weight"][0],  # Fill takes 384 channels and predicts 64
    )
    return config


def clip_config(shapes: dict) -> dict:
    shapes = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in shapes.items()}
    config = _config("dev", "text_encoder")
    vocab, width = shapes["text_model.embeddings.token_embedding.weight"]
    config.update(vocab_size=vocab, hidden_size=width, projection_dim=width,
                  intermediate_size=shapes["text_model.encoder.layers.0.mlp.fc1.weight"][0],
                  num_hidden_layers=count(shapes, r"text_model\.encoder\.layers\.(\d+)\."),
                  max_position_embeddings=shapes["text_model.embeddings.position_embedding.weight"][0],
                  num_attention_heads=width // 64 if width >= 64 else 4)
    return config


def t5_config(shapes: dict) -> dict:
    config = _config("dev", "text_encoder_2")
    vocab, width = shapes.get("shared.weight") or shapes["encoder.embed_tokens.weight"]
    heads = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    config.update(vocab_size=vocab, d_model=width, num_heads=heads[1], relative_attention_num_buckets=heads[0],
                  d_kv=shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][0] // heads[1],
                  d_ff=shapes["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0],
                  num_layers=count(shapes, r"encoder\.block\.(\d+)\."))
    return config


def _text_encoder(model_cls, config_cls, state: dict, config: dict, dtype):
    return parts.text_encoder(model_cls, config_cls(**config), state, dtype)


def load_transformer(path: str, variant: str, dtype, quantization=None):
    """The FluxTransformer2DModel of a BFL-named ``.safetensors`` file (or, with ``quantization``, a
    GGUF file's: ``engine.families.flux.gguf``), converted by ``engine.families.flux.convert``."""
    from diffusers import FluxTransformer2DModel

    from engine.families.flux import convert

    if quantization is None:
        checkpoint = tensors(path)
        if any(k.startswith(_PREFIX) for k in checkpoint):  # ComfyUI's prefix; an all-in-one file's other parts
            checkpoint = {k: v for k, v in checkpoint.items() if k.startswith(_PREFIX)}
        shapes = {k: tuple(v.shape) for k, v in checkpoint.items()}
    else:
        from diffusers.loaders.single_file_utils import load_single_file_checkpoint

        checkpoint = load_single_file_checkpoint(path, local_files_only=True)
        shapes = {k: tuple(getattr(v, "quant_shape", None) or v.shape) for k, v in checkpoint.items()}
    with tempfile.TemporaryDirectory(prefix="easel-flux-") as tmp:
        folder = Path(tmp) / "transformer"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(transformer_config(shapes, variant)), encoding="utf-8")
        extra = {"quantization_config": quantization} if quantization is not None else {}
        return FluxTransformer2DModel.from_single_file(convert.bfl_to_diffusers(checkpoint), config=tmp,
                                                       subfolder="transformer", torch_dtype=dtype,
                                                       local_files_only=True, **extra).eval()


def load_split(info: ModelInfo, dtype, transformer=None):
    """The FluxPipeline of the split-layout model whose transformer is ``info.path`` (or the already
    loaded ``transformer``). Raises ModelError (split.MissingPart) with one line naming what is missing."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5TokenizerFast

    from engine.tokenizers import bundled_tokenizer

    denoiser = split.Part("transformer", "flux1", info.variant, info.path)
    found = split.find_parts(denoiser)  # raises MissingPart
    t5_tokenizer = split.find_tokenizer("t5xxl", info.path)  # raises MissingPart
    variant = info.variant or "dev"
    if transformer is None:
        transformer = load_transformer(info.path, variant, dtype)
    vae = parts.ae16_vae(found["ae16"].path, found["ae16"].prefix, dtype)
    clip_state = tensors(found["clip_l"].path, found["clip_l"].prefix)
    clip = _text_encoder(CLIPTextModel, CLIPTextConfig, clip_state,
                         clip_config({k: tuple(v.shape) for k, v in clip_state.items()}), dtype)
    del clip_state
    t5_state = tensors(found["t5xxl"].path, found["t5xxl"].prefix)
    t5 = _text_encoder(T5EncoderModel, T5Config, t5_state, t5_config({k: tuple(v.shape) for k, v in t5_state.items()}),
                       dtype)
    del t5_state
    tokenizer_2 = T5TokenizerFast.from_pretrained(str(t5_tokenizer), local_files_only=True)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(_config("schnell" if variant == "schnell" else "dev",
                                                                    "scheduler"))
    return FluxPipeline(transformer=transformer, vae=vae, text_encoder=clip, tokenizer=bundled_tokenizer("clip"),
                        text_encoder_2=t5, tokenizer_2=tokenizer_2, scheduler=scheduler)

"""Z-Image from ComfyUI's split layout: the transformer (``diffusion_models/z_image_turbo_bf16.safetensors``,
Tongyi-MAI's names, or a GGUF of it), the Qwen3-4B text encoder (``text_encoders/qwen_3_4b.safetensors``)
and the FLUX.1 VAE (``vae/ae.safetensors``), found by ``engine.files.split`` and assembled into one
ZImagePipeline offline. The names are mapped by diffusers' own converter; each config is the
released one with every size the tensors tell put in. What shapes cannot tell follows the released
model's proportions: RoPE axes of 1/4, 3/8, 3/8 of the head width (Z-Image: 32, 48, 48 of 128).
Engine thread (imports torch, diffusers, transformers).
"""

from __future__ import annotations

from engine.api import ModelInfo
from engine.core import parts
from engine.files import split

# Tongyi-MAI/Z-Image-Turbo's transformer/config.json, the sizes filled in from the tensors.
_TRANSFORMER = {"all_patch_size": [2], "all_f_patch_size": [1], "norm_eps": 1e-05, "qk_norm": True,
                "rope_theta": 256.0, "t_scale": 1000.0, "axes_lens": [1536, 512, 512]}
# Qwen3-4B's config.json, the sizes filled in from the tensors.
_QWEN3 = {"rope_theta": 1000000.0, "max_position_embeddings": 40960, "rms_norm_eps": 1e-06, "hidden_act": "silu",
          "tie_word_embeddings": True, "attention_bias": False}
# Z-Image-Turbo's scheduler/scheduler_config.json.
_SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}


def transformer_config(shapes: dict) -> dict:
    """ZImageTransformer2DModel's config for Tongyi-MAI-named tensors of these shapes."""
    dim, patched = shapes["x_embedder.weight"]
    head = shapes["layers.0.attention.q_norm.weight"][0]
    heads = dim // head
    kv_heads = (shapes["layers.0.attention.qkv.weight"][0] // head - heads) // 2
    return {**_TRANSFORMER, "in_channels": patched // 4, "dim": dim, "n_heads": heads, "n_kv_heads": kv_heads,
            "n_layers": parts.count(shapes, r"layers\.(\d+)\."),
            "n_refiner_layers": parts.count(shapes, r"noise_refiner\.(\d+)\."),
            "cap_feat_dim": shapes["cap_embedder.1.weight"][1],
            "axes_dims": [head // 4, 3 * head // 8, 3 * head // 8]}


def qwen3_config(shapes: dict):
    """The Qwen3Config of a Qwen3 text encoder (``model.`` names, as ComfyUI's qwen_3_4b) of these shapes."""
    from transformers import Qwen3Config

    vocab, width = shapes["embed_tokens.weight"]
    head = shapes["layers.0.self_attn.q_norm.weight"][0]
    return Qwen3Config(**_QWEN3, vocab_size=vocab, hidden_size=width, head_dim=head,
                       intermediate_size=shapes["layers.0.mlp.gate_proj.weight"][0],
                       num_hidden_layers=parts.count(shapes, r"layers\.(\d+)\."),
                       num_attention_heads=shapes["layers.0.self_attn.q_proj.weight"][0] // head,
                       num_key_value_heads=shapes["layers.0.self_attn.k_proj.weight"][0] // head)


def load_split(info: ModelInfo, dtype):
    """The ZImagePipeline of the split-layout model whose transformer is ``info.path`` (``.safetensors``
    or ``.gguf``). Raises ModelError (split.MissingPart) with one line naming what is missing."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen2Tokenizer, Qwen3Model

    found = split.find_parts(split.Part("transformer", "zimage", info.variant, info.path))  # raises MissingPart
    tokenizer_dir = split.find_tokenizer("qwen3", info.path)
    transformer = parts.transformer(ZImageTransformer2DModel, info.path, transformer_config, dtype)
    vae = parts.ae16_vae(found["ae16"].path, found["ae16"].prefix, dtype)
    state = {k.removeprefix("model."): v for k, v in parts.tensors(found["qwen3"].path, found["qwen3"].prefix).items()
             if not k.startswith("lm_head.")}
    text_encoder = parts.text_encoder(Qwen3Model, qwen3_config(parts.shapes_of(state)), state, dtype)
    del state
    tokenizer = Qwen2Tokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(**_SCHEDULER), vae=vae, text_encoder=text_encoder,
                          tokenizer=tokenizer, transformer=transformer)

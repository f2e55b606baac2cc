"""Qwen-Image (and Qwen-Image-Edit / Edit Plus) from ComfyUI's split layout: the transformer
(``diffusion_models/qwen_image_bf16.safetensors``, ``qwen_image_edit_2509_fp8_e4m3fn.safetensors`` … or a
GGUF of it), the Qwen2.5-VL-7B text encoder (``text_encoders/qwen_2.5_vl_7b.safetensors``) and the
Qwen-Image VAE (``vae/qwen_image_vae.safetensors``), found by ``engine.files.split`` and assembled into
one pipeline offline.

Each config is the released one with every size the tensors tell put in. What shapes cannot tell
follows the released model's proportions, the same rules the tiny test models are built with: the
transformer's RoPE axes of 1/8, 7/16, 7/16 of the head width (Qwen-Image: 16, 56, 56 of 128), the text
model's 128-wide heads (2 heads below 1024 channels) and multimodal RoPE sections of 1/8, 3/16, 3/16 of
the head (16, 24, 24), the vision tower's 80-wide heads (2 below 640). Engine thread (imports torch,
diffusers, transformers).
"""

from __future__ import annotations

from pathlib import Path

from engine.api import ModelInfo
from engine.core import parts
from engine.files import split
from engine.families.qwen_image.rules import SCHEDULER

# Qwen2.5-VL-7B-Instruct's config.json (what the shapes do not say).
_TEXT = {"rope_theta": 1000000.0, "max_position_embeddings": 128000, "rms_norm_eps": 1e-06, "hidden_act": "silu",
         "tie_word_embeddings": False}
# Qwen2-VL's image processor as the released processor/preprocessor_config.json sets it.
_PROCESSOR = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
              "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
# variant -> the pipeline class its modules are assembled into
PIPELINES = {"": "QwenImagePipeline", "edit": "QwenImageEditPipeline", "edit-plus": "QwenImageEditPlusPipeline"}


def transformer_config(shapes: dict) -> dict:
    """QwenImageTransformer2DModel's config for tensors of these shapes (diffusers' names, as ComfyUI's)."""
    inner, in_channels = shapes["img_in.weight"]
    head = shapes["transformer_blocks.0.attn.norm_q.weight"][0]
    return {"patch_size": 2, "in_channels": in_channels, "out_channels": shapes["proj_out.weight"][0] // 4,
            "num_layers": parts.count(shapes, r"transformer_blocks\.(\d+)\."), "attention_head_dim": head,
            "num_attention_heads": inner // head, "joint_attention_dim": shapes["txt_in.weight"][1],
            "guidance_embeds": False, "axes_dims_rope": [head // 8, 7 * head // 16, 7 * head // 16],
            # Edit 2511 (ComfyUI marks it with ``__index_timestep_zero__``): reference latents at timestep 0
            "zero_cond_t": "__index_timestep_zero__" in shapes}


def text_names(state: dict) -> dict:
    """A Qwen2.5-VL state dict in transformers' current names (``model.language_model.``,
    ``model.visual.``), from the original ones ComfyUI's file keeps (``model.layers``, ``visual.``)."""
    out = {}
    for key, value in state.items():
        if key.startswith("visual."):
            key = "model." + key
        elif key.startswith("model.") and not key.startswith(("model.language_model.", "model.visual.")):
            key = "model.language_model." + key[len("model."):]
        out[key] = value
    return out


def text_config(shapes: dict, tokenizer):
    """The Qwen2_5_VLConfig of a Qwen2.5-VL state dict (transformers' names) of these shapes."""
    from transformers import Qwen2_5_VLConfig

    lm = "model.language_model."
    vocab, width = shapes[f"{lm}embed_tokens.weight"]
    heads = width // 128 if width >= 1024 else 2
    head = width // heads
    text = {**_TEXT, "vocab_size": vocab, "hidden_size": width, "num_attention_heads": heads,
            "num_key_value_heads": shapes[f"{lm}layers.0.self_attn.k_proj.weight"][0] // head,
            "intermediate_size": shapes[f"{lm}layers.0.mlp.gate_proj.weight"][0],
            "num_hidden_layers": parts.count(shapes, r"model\.language_model\.layers\.(\d+)\."),
            "rope_scaling": {"mrope_section": [head // 8, 3 * head // 16, 3 * head // 16], "rope_type": "default",
                             "type": "default"}}
    vision = {}
    if "model.visual.patch_embed.proj.weight" in shapes:
        hidden = shapes["model.visual.patch_embed.proj.weight"][0]
        vision = {"depth": parts.count(shapes, r"model\.visual\.blocks\.(\d+)\."), "hidden_size": hidden,
                  "num_heads": hidden // 80 if hidden >= 640 else 2,
                  "intermediate_size": shapes["model.visual.blocks.0.mlp.gate_proj.weight"][0],
                  "out_hidden_size": shapes["model.visual.merger.mlp.2.weight"][0]}
    ids = tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, vocab_size=vocab, vision_start_token_id=ids[0],
                            vision_end_token_id=ids[1], image_token_id=ids[2], video_token_id=ids[3])


def vae_config(shapes: dict) -> dict:
    """AutoencoderKLQwenImage's config (the released one: four levels, two blocks each) for a Wan-layout
    VAE of these shapes (diffusers' names)."""
    return {"base_dim": shapes["encoder.conv_in.weight"][0], "z_dim": shapes["decoder.conv_in.weight"][1],
            "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "temperal_downsample": [False, True, True]}


def load_vae(part: split.Part, dtype):
    """The Qwen-Image VAE (Wan 2.1's layout) in ``part``, its names mapped by diffusers' Wan converter."""
    from diffusers import AutoencoderKLQwenImage
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    state = convert_wan_vae_to_diffusers(parts.tensors(part.path, part.prefix))
    vae = AutoencoderKLQwenImage(**vae_config(parts.shapes_of(state)))
    vae.load_state_dict(state, strict=True)
    return vae.to(dtype).eval()


def image_processor(tokenizer_dir: Path):
    """Qwen2.5-VL's image processor: the tokenizer folder's own settings (a Hugging Face snapshot's
    processor files) when it has them, else the released ones."""
    from transformers import Qwen2VLImageProcessor

    if (tokenizer_dir / "preprocessor_config.json").is_file():
        return Qwen2VLImageProcessor.from_pretrained(str(tokenizer_dir), local_files_only=True)
    return Qwen2VLImageProcessor(**_PROCESSOR)


def load_split(info: ModelInfo, dtype):
    """The Qwen-Image pipeline (``PIPELINES[info.variant]``) of the split-layout model whose transformer
    is ``info.path`` (``.safetensors`` or ``.gguf``). Raises ModelError (split.MissingPart) with one line
    naming what is missing."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    found = split.find_parts(split.Part("transformer", "qwen_image", info.variant, info.path))  # raises MissingPart
    tokenizer_dir = split.find_tokenizer("qwen25vl", info.path)
    tokenizer = Qwen2Tokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    transformer = parts.transformer(QwenImageTransformer2DModel, info.path, transformer_config, dtype)
    vae = load_vae(found["qwen-vae"], dtype)
    state = text_names(parts.tensors(found["qwen25vl"].path, found["qwen25vl"].prefix))
    config = text_config(parts.shapes_of(state), tokenizer)
    text_encoder = parts.text_encoder(Qwen2_5_VLForConditionalGeneration, config, state, dtype)
    del state
    modules = dict(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=vae, text_encoder=text_encoder,
                   tokenizer=tokenizer, transformer=transformer)
    if info.variant:  # an Edit model reads the input image through Qwen2.5-VL's processor too
        from engine.families.qwen_image import processor

        modules["processor"] = processor.make(image_processor(tokenizer_dir), tokenizer)
    return getattr(diffusers, PIPELINES.get(info.variant, PIPELINES[""]))(**modules)

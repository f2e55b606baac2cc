"""A tiny random-weight Qwen-Image diffusers folder, built locally (tests and demos).

The components are the real classes from Qwen/Qwen-Image's configs with tiny sizes: the MMDiT
``QwenImageTransformer2DModel`` (2x2 patches of 16 latent channels, 3-axis RoPE), a Qwen2.5-VL text
encoder and byte-level BPE tokenizer with the vision markers (``engine.testencoders``), the Wan-style
``AutoencoderKLQwenImage`` (8x down, 16 channels, its released latents mean / std) and the
flow-matching Euler scheduler with Qwen-Image's dynamic shift. Nothing is downloaded. Calling thread.
"""

from __future__ import annotations

import json
from pathlib import Path

_TEXT_WIDTH = 32


# make-test-model name -> (pipeline class, what it is)
TEST_MODELS = {
    "qwen-image": ("QwenImagePipeline", "Qwen-Image (MMDiT, Qwen2.5-VL encoder)"),
    "qwen-image-edit": ("QwenImageEditPipeline", "Qwen-Image-Edit (edit an image by instruction)"),
    "qwen-image-edit-plus": ("QwenImageEditPlusPipeline",
                             "Qwen-Image-Edit Plus (edit by instruction, with reference images)"),
}


def vl_processor(tokenizer):
    """Qwen2.5-VL's processor (its image processor's released settings: 14 px patches merged 2x2,
    normalised with CLIP's mean / std; a small pixel budget) over ``tokenizer``: what the Edit pipelines
    read the input image with."""
    from transformers import Qwen2VLImageProcessor

    from engine.families.qwen_image import processor

    # The released pixel budget is up to 12.8 MP (thousands of image tokens); a tiny model reads 64 tokens at most.
    images = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2,
                                   size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 64},
                                   image_mean=[0.48145466, 0.4578275, 0.40821073],
                                   image_std=[0.26862954, 0.26130258, 0.27577711])
    return processor.make(images, tokenizer)


def components(seed: int = 0) -> dict:
    """The tiny QwenImagePipeline components (every module seeded)."""
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    from engine.core.loading import quiet_libraries
    from engine.testencoders import QWEN_VL_TOKENS, qwen25_vl_encoder, qwen_tokenizer
    from engine.testmodels import randomize

    quiet_libraries()
    generator = torch.Generator().manual_seed(seed)
    tokenizer = qwen_tokenizer(model_max_length=1024 + 34, extra_special=QWEN_VL_TOKENS)
    text_encoder = qwen25_vl_encoder(seed, tokenizer, width=_TEXT_WIDTH)
    torch.manual_seed(seed)
    # Qwen-Image's transformer/config.json cut down (60 layers -> 2, 24 heads of 128 -> 2 of 16, the
    # 3584-wide Qwen2.5-VL-7B features -> the tiny encoder's width; RoPE axes sum to the head size).
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=_TEXT_WIDTH, guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    # vae/config.json's layout (four levels, 8x down, 16 channels, the Wan latents mean/std) at base_dim 8.
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True, True])
    for module in (transformer, vae, text_encoder):
        randomize(module, generator, full=False)
    # scheduler/scheduler_config.json of Qwen/Qwen-Image.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")
    return dict(scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                transformer=transformer.eval())


def make_qwen_image_test_model(dest: Path, seed: int = 0, name: str = "qwen-image") -> Path:
    """Write the tiny Qwen-Image model ``name`` (a TEST_MODELS key: Qwen-Image, or its Edit / Edit Plus
    sibling with the same modules plus Qwen2.5-VL's processor) as a diffusers folder to ``dest``;
    returns ``dest``."""
    import diffusers

    cls = TEST_MODELS[name][0]
    parts = components(seed)
    if cls != "QwenImagePipeline":
        parts["processor"] = vl_processor(parts["tokenizer"])
    pipe = getattr(diffusers, cls)(**parts)
    dest = Path(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    index = json.loads((dest / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == cls
    if "processor" in index:  # as the released folders list it (Easel's image-only subclass is not named)
        index["processor"] = ["transformers", "Qwen2VLProcessor"]
        (dest / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return dest

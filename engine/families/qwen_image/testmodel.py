"""A tiny random-weight Qwen-Image diffusers folder, built locally (tests and demos).

The components are the real classes from Qwen/Qwen-Image's configs with tiny sizes: the MMDiT
``QwenImageTransformer2DModel`` (2x2 patches of 16 latent channels, 3-axis RoPE), a Qwen2.5-VL text
encoder and byte-level BPE tokenizer with the vision markers (``engine.testencoders``), the Wan-style
``AutoencoderKLQwenImage`` (8x down, 16 channels, its released latents mean / std) and the
flow-matching Euler scheduler with Qwen-Image's dynamic shift. Nothing is downloaded. Calling thread.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.families.qwen_image.rules import SCHEDULER

TEXT_WIDTH = 32


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


def components(seed: int = 0, released_rules: bool = False) -> dict:
    """The tiny QwenImagePipeline components (every module seeded). ``released_rules``: what a
    split-layout file's shapes cannot tell follows the rules its loader uses
    (``engine.families.qwen_image.split``: RoPE axes 1/8, 7/16, 7/16 of the 32-wide heads, multimodal RoPE
    sections 1/8, 3/16, 3/16, the VAE's two blocks per level), so the same weights load from either layout."""
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    from engine.core.loading import quiet_libraries
    from engine.testencoders import QWEN_VL_TOKENS, qwen25_vl_encoder, qwen_tokenizer
    from engine.testmodels import randomize

    quiet_libraries()
    generator = torch.Generator().manual_seed(seed)
    tokenizer = qwen_tokenizer(model_max_length=1024 + 34, extra_special=QWEN_VL_TOKENS)
    text_encoder = qwen25_vl_encoder(seed, tokenizer, width=TEXT_WIDTH,
                                     mrope=(2, 3, 3) if released_rules else (2, 2, 4))
    torch.manual_seed(seed)
    # Qwen-Image's transformer/config.json cut down (60 layers -> 2, 24 heads of 128 -> 2 of 16, the
    # 3584-wide Qwen2.5-VL-7B features -> the tiny encoder's width; RoPE axes sum to the head size).
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=32 if released_rules else 16,
        num_attention_heads=2, joint_attention_dim=TEXT_WIDTH, guidance_embeds=False,
        axes_dims_rope=(4, 14, 14) if released_rules else (8, 4, 4))
    # vae/config.json's layout (four levels, 8x down, 16 channels, the Wan latents mean/std) at base_dim 8.
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2 if released_rules else 1,
                                 temperal_downsample=[False, True, True])
    for module in (transformer, vae, text_encoder):
        randomize(module, generator, full=False)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    return dict(scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                transformer=transformer.eval())


def make_qwen_image_test_model(dest: Path, seed: int = 0, name: str = "qwen-image",
                               released_rules: bool = False) -> Path:
    """Write the tiny Qwen-Image model ``name`` (a TEST_MODELS key: Qwen-Image, or its Edit / Edit Plus
    sibling with the same modules plus Qwen2.5-VL's processor) as a diffusers folder to ``dest``;
    returns ``dest``."""
    import diffusers

    cls = TEST_MODELS[name][0]
    parts = components(seed, released_rules)
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


# ComfyUI's file names for each model (Comfy-Org's repackaged files: qwen_image_bf16, qwen_image_edit_2509_bf16 …)
COMFY_NAMES = {"qwen-image": "qwen_image-tiny", "qwen-image-edit": "qwen_image_edit-tiny",
               "qwen-image-edit-plus": "qwen_image_edit_2509-tiny"}
_RESNET = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
           "conv_shortcut": "shortcut"}
_TOP = {"encoder.conv_in": "encoder.conv1", "decoder.conv_in": "decoder.conv1", "encoder.norm_out": "encoder.head.0",
        "encoder.conv_out": "encoder.head.2", "decoder.norm_out": "decoder.head.0",
        "decoder.conv_out": "decoder.head.2", "quant_conv": "conv1", "post_quant_conv": "conv2"}


def wan_vae_to_original(state: dict) -> dict:
    """diffusers' AutoencoderKLQwenImage weights in Wan 2.1's original names (``encoder.downsamples.N.residual``,
    ``decoder.upsamples``, ``middle``, ``head``; what ComfyUI's qwen_image_vae.safetensors holds): the inverse of
    diffusers' ``convert_wan_vae_to_diffusers`` for the released layout (four levels of two blocks)."""
    out = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module in _TOP:
            out[f"{_TOP[module]}.{param}"] = value
            continue
        if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(\w+)$", module):
            module = f"{m[1]}.middle.{2 * int(m[2])}.{_RESNET[m[3]]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$", module):
            module = f"{m[1]}.middle.1.{m[2]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.(.+)$", module):
            module = f"encoder.downsamples.{m[1]}.{_RESNET.get(m[2], m[2])}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)$", module):
            module = f"decoder.upsamples.{4 * int(m[1]) + int(m[2])}.{_RESNET[m[3]]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)$", module):
            module = f"decoder.upsamples.{4 * int(m[1]) + 3}.{m[2]}"
        else:
            raise ValueError(f"a VAE weight with no original name: {key}")
        out[f"{module}.{param}"] = value
    return out


def text_encoder_to_original(state: dict) -> dict:
    """A Qwen2.5-VL state dict in the original names ComfyUI's qwen_2.5_vl_7b.safetensors keeps
    (``model.layers``, ``visual.``, ``lm_head``)."""
    out = {}
    for key, value in state.items():
        if key.startswith("model.visual."):
            key = key[len("model."):]
        elif key.startswith("model.language_model."):
            key = "model." + key[len("model.language_model."):]
        out[key] = value.contiguous()
    return out


def make_qwen_image_comfyui_test_model(dest: Path, seed: int = 0, name: str = "qwen-image", gguf: bool = False) -> Path:
    """Write the same tiny Qwen-Image model ``name`` as ComfyUI's split layout under ``dest`` (a ComfyUI
    install): ``models/diffusion_models/qwen_image[_edit[_2509]]-tiny.safetensors`` (diffusers' names under
    ComfyUI's prefix; with ``gguf`` a Q8_0 ``.gguf`` instead), ``models/text_encoders/qwen_2.5_vl_7b.safetensors``
    (the original Qwen2.5-VL names), ``models/vae/qwen_image_vae.safetensors`` (Wan 2.1's names) and the Qwen
    tokenizer where ComfyUI keeps its own (``comfy/text_encoders/qwen25_tokenizer``). Returns the transformer file."""
    import tempfile

    from safetensors.torch import load_file, save_file
    from transformers import Qwen2Tokenizer

    from engine.testmodels import write_gguf

    dest = Path(dest)
    models = dest / "models"
    stem = COMFY_NAMES[name]
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="easel-qwen-") as tmp:
        folder = make_qwen_image_test_model(Path(tmp) / "q", seed, name, released_rules=True)
        transformer = load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))
        if gguf:
            target = write_gguf(transformer, models / "diffusion_models" / f"{stem}-Q8_0.gguf", arch="qwen_image")
        else:
            target = models / "diffusion_models" / f"{stem}.safetensors"
            save_file({"model.diffusion_model." + k: v.contiguous() for k, v in transformer.items()}, str(target))
        encoder = {}
        for file in sorted((folder / "text_encoder").glob("*.safetensors")):
            encoder.update(load_file(str(file)))
        save_file(text_encoder_to_original(encoder), str(models / "text_encoders" / "qwen_2.5_vl_7b.safetensors"))
        vae = load_file(str(folder / "vae" / "diffusion_pytorch_model.safetensors"))
        save_file({k: v.contiguous() for k, v in wan_vae_to_original(vae).items()},
                  str(models / "vae" / "qwen_image_vae.safetensors"))
        Qwen2Tokenizer.from_pretrained(str(folder / "tokenizer")).save_pretrained(
            str(dest / "comfy" / "text_encoders" / "qwen25_tokenizer"))
    return target

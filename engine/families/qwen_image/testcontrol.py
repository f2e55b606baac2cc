"""A tiny random-weight Qwen-Image ControlNet for the Qwen-Image test model (``controlnet-qwen-image-union``):
the real ``QwenImageControlNetModel`` in the layout of InstantX's Qwen-Image-ControlNet-Union (its
config.json: 5 of the transformer's blocks, no extra condition channels, a union model told the kind
by the image), cut down to the tiny test transformer (``engine.families.qwen_image.testmodel``: 2
heads of 16, the tiny text encoder's width, RoPE axes (8, 4, 4)), 2 blocks; written as a diffusers
folder or as one ``.safetensors`` file in the same names. Its zero-initialised control embedder and
output blocks get clearly non-zero weights, so a control visibly changes the image. Calling thread
(builds torch modules).
"""

from __future__ import annotations

from pathlib import Path

TEST_CONTROLS = {"controlnet-qwen-image-union": "Qwen-Image ControlNet Union (InstantX layout)"}


def build(name: str, seed: int = 0):
    """The tiny QwenImageControlNetModel of the test control model ``name``."""
    import torch
    from diffusers import QwenImageControlNetModel

    from engine.families.qwen_image.testmodel import TEXT_WIDTH
    from engine.testmodels import randomize, wake

    assert name in TEST_CONTROLS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 100 + 17)
        model = QwenImageControlNetModel(
            patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=TEXT_WIDTH, axes_dims_rope=(8, 4, 4),
            extra_condition_channels=0)
    generator = torch.Generator().manual_seed(seed + 6789)
    randomize(model, generator, full=False)
    # the zero-initialised control embedder and output blocks: clearly non-zero
    wake([p for n, p in model.named_parameters() if n.startswith(("controlnet_x_embedder.", "controlnet_blocks."))],
         generator)
    return model.eval()


def write(name: str, dest: Path, layout: str, seed: int = 0) -> Path:
    """Write the test control model ``name`` under ``dest``; returns the folder or file to use."""
    from engine.testmodels import write_model

    return write_model(build(name, seed), name, dest, layout)

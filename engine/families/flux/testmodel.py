"""Tiny random-weight FLUX.1 models, built locally from the bundled real configs
(``resources/configs/flux1-dev|schnell``) with tiny dimensions: a 1 + 1 block FluxTransformer2DModel,
the shared tiny T5 and CLIP-L (``engine.testencoders``) and a 16-channel AutoencoderKL with the real
8x depth. Tests and demos; calling thread (imports torch, diffusers).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.paths import resources_dir

WIDTH = 32  # T5 and CLIP widths (the transformer's joint_attention_dim / pooled_projection_dim)


def bundled_config(variant: str, part: str) -> dict:
    """The real config of FLUX.1 [``variant``]'s ``part`` (``transformer``, ``vae``, ``scheduler`` ...)."""
    folder = resources_dir() / "configs" / f"flux1-{variant}" / part
    name = "scheduler_config.json" if part == "scheduler" else "config.json"
    return json.loads((folder / name).read_text(encoding="utf-8"))


def tiny_components(variant: str = "dev", seed: int = 0) -> dict:
    """The FluxPipeline components of a tiny FLUX.1 [``variant``] (every module seeded)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    from engine.testencoders import clip_encoder, clip_tokenizer, t5_encoder, t5_tokenizer
    from engine.testmodels import randomize

    torch.manual_seed(seed)
    config = bundled_config(variant, "transformer")
    config.update(attention_head_dim=16, axes_dims_rope=[4, 6, 6], num_attention_heads=2, num_layers=1,
                  num_single_layers=1, joint_attention_dim=WIDTH, pooled_projection_dim=WIDTH)
    transformer = FluxTransformer2DModel.from_config(config)
    vae_config = bundled_config(variant, "vae")
    vae_config.update(block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=8, sample_size=64)
    vae = AutoencoderKL.from_config(vae_config)
    tokenizer_2 = t5_tokenizer()
    text_encoder = clip_encoder(seed + 1, WIDTH, layers=2)
    text_encoder_2 = t5_encoder(seed + 2, len(tokenizer_2), WIDTH)
    generator = torch.Generator().manual_seed(seed)
    for module in (transformer, vae):
        randomize(module, generator, full=False)
    return dict(transformer=transformer.eval(), vae=vae.eval(), text_encoder=text_encoder,
                text_encoder_2=text_encoder_2, tokenizer=clip_tokenizer(), tokenizer_2=tokenizer_2,
                scheduler=FlowMatchEulerDiscreteScheduler.from_config(bundled_config(variant, "scheduler")))


def make_flux_test_model(dest: Path, variant: str = "dev", seed: int = 0) -> Path:
    """Write a tiny FLUX.1 [``variant``] diffusers folder to ``dest``; returns ``dest``."""
    from diffusers import FluxPipeline

    dest = Path(dest)
    FluxPipeline(**tiny_components(variant, seed)).save_pretrained(dest, safe_serialization=True)
    return dest

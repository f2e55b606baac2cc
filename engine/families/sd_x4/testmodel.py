"""A tiny random-weight SD x4 upscaler folder, built locally (tests and demos). Calling thread."""

from __future__ import annotations

import json
from pathlib import Path


def make_x4_test_model(dest: Path, seed: int = 0) -> Path:
    """Write a tiny SD x4 upscaler folder (StableDiffusionUpscalePipeline: 7-channel UNet, 4x VAE, CLIP
    text encoder with the bundled CLIP tokenizer) to ``dest``. No spatial attention in the UNet, so a
    tiled upscale can be compared with a single pass."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine.testmodels import randomize, tokenizer_for

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32, layers_per_block=1, block_out_channels=[8, 16], in_channels=7, out_channels=4,
        down_block_types=["DownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "UpBlock2D"],
        mid_block_type="UNetMidBlock2D", cross_attention_dim=32, attention_head_dim=8, num_class_embeds=400,
        norm_num_groups=8,
    ).eval()
    vae = AutoencoderKL(
        block_out_channels=[8, 16, 16], in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3, norm_num_groups=8,
        scaling_factor=0.08333, mid_block_add_attention=False,
    ).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=2, num_hidden_layers=2, pad_token_id=1, vocab_size=49408, max_position_embeddings=77,
        hidden_act="gelu",
    )).eval()
    generator = torch.Generator().manual_seed(seed)
    for module in (unet, vae, text_encoder):
        randomize(module, generator, full=False)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer_for("clip-pad-bang"), unet=unet,
        low_res_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0001,
                                        beta_end=0.02),
        scheduler=DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                                beta_end=0.012, prediction_type="v_prediction", clip_sample=False,
                                set_alpha_to_one=False),
        max_noise_level=350,
    )
    pipe.save_pretrained(Path(dest), safe_serialization=True)
    index = json.loads((Path(dest) / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "StableDiffusionUpscalePipeline"
    return Path(dest)

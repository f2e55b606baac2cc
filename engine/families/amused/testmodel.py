"""A tiny random-weight aMUSEd folder, built locally (tests and demos). Shapes follow the component
classes diffusers' own aMUSEd tests build; the tokenizer is the bundled CLIP tokenizer. Calling thread.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_amused_test_model(dest: Path, seed: int = 0) -> Path:
    """Write a tiny aMUSEd diffusers folder (VQ-GAN 4x down, 1-layer UVit transformer) to ``dest``."""
    import torch
    from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from engine.testmodels import randomize, tokenizer_for

    torch.manual_seed(seed)
    codebook = 16
    transformer = UVit2DModel(
        hidden_size=32, use_bias=False, hidden_dropout=0.0, cond_embed_dim=32, micro_cond_encode_dim=2,
        micro_cond_embed_dim=10, encoder_hidden_size=32, vocab_size=codebook + 1, codebook_size=codebook,
        in_channels=16, block_out_channels=16, num_res_blocks=1, downsample=True, upsample=True, block_num_heads=1,
        num_hidden_layers=1, num_attention_heads=1, attention_dropout=0.0, intermediate_size=32,
        layer_norm_eps=1e-6, ln_elementwise_affine=True,
    )
    vqvae = VQModel(
        act_fn="silu", block_out_channels=[16, 16, 16], down_block_types=["DownEncoderBlock2D"] * 3, in_channels=3,
        latent_channels=16, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=codebook, out_channels=3,
        sample_size=64, up_block_types=["UpDecoderBlock2D"] * 3, mid_block_add_attention=False,
        lookup_from_codebook=True, force_upcast=False,
    )
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=2, num_hidden_layers=2, pad_token_id=49407, vocab_size=49408, projection_dim=32,
        max_position_embeddings=77,
    ))
    generator = torch.Generator().manual_seed(seed)
    for module in (transformer, vqvae, text_encoder):
        randomize(module, generator, full=False)
    pipe = AmusedPipeline(vqvae=vqvae.eval(), tokenizer=tokenizer_for("clip"), text_encoder=text_encoder.eval(),
                          transformer=transformer.eval(), scheduler=AmusedScheduler(mask_token_id=codebook))
    dest = Path(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    index = json.loads((dest / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "AmusedPipeline"
    return dest

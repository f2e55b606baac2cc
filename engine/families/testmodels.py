"""Tiny random-weight models of the non-SD families, built locally (for tests and demos).

Shapes follow the component classes diffusers' own aMUSEd tests build; the tokenizer is the bundled
CLIP tokenizer (so the text encoder's vocabulary is CLIP's). Runs on the calling thread.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_amused_test_model(dest: Path, seed: int = 0) -> Path:
    """Write a tiny aMUSEd diffusers folder (VQ-GAN 4x down, 1-layer UVit transformer) to ``dest``."""
    import torch
    from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from engine.testmodels import _randomize, _tokenizer

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
        _randomize(module, generator, full=False)
    pipe = AmusedPipeline(vqvae=vqvae.eval(), tokenizer=_tokenizer("clip"), text_encoder=text_encoder.eval(),
                          transformer=transformer.eval(), scheduler=AmusedScheduler(mask_token_id=codebook))
    dest = Path(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    index = json.loads((dest / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "AmusedPipeline"
    return dest


def make_esrgan_test_model(dest: Path, scale: int = 4, seed: int = 0, filters: int = 8, blocks: int = 1) -> Path:
    """Write a tiny random-weight ESRGAN (RRDB) upscaler as one .safetensors file (``dest``, or
    ``dest/tiny-esrgan-x{scale}.safetensors`` when ``dest`` is not a .safetensors name)."""
    import torch

    from engine.testmodels import save_safetensors
    from engine.upscale import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    dest = Path(dest)
    if dest.suffix.lower() != ".safetensors":
        dest = dest / f"tiny-esrgan-x{scale}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_safetensors(dest, ESRGAN(num_filters=filters, num_blocks=blocks, scale=scale).state_dict())
    return dest


def make_compact_test_model(dest: Path, seed: int = 0) -> Path:
    """Write a tiny Real-ESRGAN compact x4 upscaler (SRVGGNetCompact, the realesr-general-x4v3 class)
    as one .safetensors file (``dest``, or ``dest/tiny-realesrgan-compact-x4.safetensors``).

    The architecture adds its learned detail to a nearest-neighbour enlargement of the input; the
    detail branch's last layer is scaled down here, so random weights give the input enlarged with a
    faint texture rather than noise: a demo upscaler whose results look like the image."""
    import torch

    from engine.testmodels import save_safetensors
    from engine.upscale import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    dest = Path(dest)
    if dest.suffix.lower() != ".safetensors":
        dest = dest / "tiny-realesrgan-compact-x4.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=2, upscale=4)
    state = model.state_dict()
    last = max(int(k.split(".")[1]) for k in state if k.startswith("body.") and k.endswith(".weight"))
    state[f"body.{last}.weight"] = state[f"body.{last}.weight"] * 0.02
    state[f"body.{last}.bias"] = torch.zeros_like(state[f"body.{last}.bias"])
    save_safetensors(dest, state)
    return dest


def make_unclip_test_model(dest: Path, seed: int = 0) -> Path:
    """Write a tiny Stable unCLIP (image variations) diffusers folder to ``dest``.

    The stable-diffusion-2-1-unclip layout at toy sizes: a 32 px CLIP vision encoder with projection
    (its preprocessor config says ``CLIPImageProcessor`` as the real folder does; without torchvision
    transformers reads it with the PIL processor), the embedding normalizer and DDPM noising schedule,
    an SD 2.x-style UNet whose class embedding takes the noised image embedding plus its noise-level
    embedding (2 x 32 wide), the real 8x-downsampling tiny VAE, a 32-wide CLIP text encoder with the
    bundled CLIP tokenizer, and a v-prediction DDIM scheduler. Runs on the calling thread.
    """
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline,
                           UNet2DConditionModel)
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from engine.testmodels import _TINY_VAE, _randomize, _tokenizer

    torch.manual_seed(seed)
    width = 32
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=width, projection_dim=width, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        intermediate_size=37, patch_size=4,
    ))
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=width)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_size=width, intermediate_size=37,
        layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=width,
    ))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 64), attention_head_dim=(2, 4),
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * width, cross_attention_dim=width,
        layers_per_block=1, upcast_attention=True, use_linear_projection=True,
    )
    vae = AutoencoderKL(**_TINY_VAE, sample_size=768)  # as the real VAE: tiled decoding only past 768 px
    generator = torch.Generator().manual_seed(seed)
    for module in (image_encoder, normalizer, text_encoder, unet, vae):
        _randomize(module, generator, full=False)
    with torch.no_grad():  # the normalizer's std divides: keep it well away from zero
        normalizer.std.abs_().add_(1.0)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessorPil(crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32}),
        image_encoder=image_encoder.eval(), image_normalizer=normalizer.eval(),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=1000),
        tokenizer=_tokenizer("clip"), text_encoder=text_encoder.eval(), unet=unet.eval(), vae=vae.eval(),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1,
                                clip_sample=False),
    )
    dest = Path(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    # Name the image processor as the real folder does (transformers picks its PIL variant at load).
    index_path, pre_path = dest / "model_index.json", dest / "feature_extractor" / "preprocessor_config.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    index_path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    pre = json.loads(pre_path.read_text(encoding="utf-8"))
    pre["image_processor_type"] = "CLIPImageProcessor"
    pre_path.write_text(json.dumps(pre, indent=2) + "\n", encoding="utf-8")
    assert index["_class_name"] == "StableUnCLIPImg2ImgPipeline"
    return dest

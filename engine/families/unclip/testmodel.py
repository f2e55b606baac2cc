"""A tiny random-weight Stable unCLIP (image variations) folder, built locally. Calling thread.
"""

from __future__ import annotations

import json
from pathlib import Path


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

    from engine.testmodels import TINY_VAE, randomize, tokenizer_for

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
    vae = AutoencoderKL(**TINY_VAE, sample_size=768)  # as the real VAE: tiled decoding only past 768 px
    generator = torch.Generator().manual_seed(seed)
    for module in (image_encoder, normalizer, text_encoder, unet, vae):
        randomize(module, generator, full=False)
    with torch.no_grad():  # the normalizer's std divides: keep it well away from zero
        normalizer.std.abs_().add_(1.0)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessorPil(crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32}),
        image_encoder=image_encoder.eval(), image_normalizer=normalizer.eval(),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=1000),
        tokenizer=tokenizer_for("clip"), text_encoder=text_encoder.eval(), unet=unet.eval(), vae=vae.eval(),
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

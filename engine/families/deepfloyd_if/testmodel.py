"""Tiny random-weight DeepFloyd IF cascades, built locally (tests and demos).

``make_cascade_test_model(dest)`` writes the layout a user downloads, side by side in one folder::

    dest/
      IF-I-tiny/       model_index "IFPipeline"                 (stage I, 16 px here, 64 px for real)
      IF-II-tiny/      model_index "IFSuperResolutionPipeline"  (stage II, x4)
      x4-upscaler-tiny model_index "StableDiffusionUpscalePipeline" (optional stage III, x4)

The shapes follow the component classes of the real models (the IF UNets' simple cross-attention
blocks and text embedding, the x4 upscaler's 7-channel UNet with a noise-level class embedding and a
4x VAE). The T5 tokenizer is a Unigram model trained here on a few lines of text with the
``tokenizers`` library and saved as ``tokenizer.json``: nothing is downloaded. As in the released
folders, stage II has no text encoder (it reuses stage I's T5 embeddings), and both IF stages list a
safety checker, feature extractor and watermarker in model_index.json that are not on disk.
Runs on the calling thread (imports torch, diffusers).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.testencoders import t5_encoder, t5_tokenizer

_T5_WIDTH = 32
# Written into the IF folders' model_index.json as the released ones list them (never on disk here).
_RELEASE_EXTRAS = {
    "safety_checker": ["deepfloyd_if", "IFSafetyChecker"],
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "watermarker": ["deepfloyd_if", "IFWatermarker"],
}


def make_cascade_test_model(dest: Path, seed: int = 0, upscaler: bool = True) -> Path:
    """Write a tiny IF cascade (stage I, stage II and, with ``upscaler``, the x4 stage) into ``dest``;
    returns the stage I folder, the one a user picks as the model."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    stage1 = _make_stage1(dest / "IF-I-tiny", seed)
    _make_stage2(dest / "IF-II-tiny", seed + 1)
    if upscaler:
        from engine.families.sd_x4.testmodel import make_x4_test_model

        make_x4_test_model(dest / "x4-upscaler-tiny", seed + 2)
    return stage1


def _if_unet(seed: int, stage2: bool):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    extra = dict(class_embed_type="timestep", mid_block_scale_factor=1.414, time_embedding_act_fn="gelu",
                 resnet_skip_time_act=True, resnet_out_scale_factor=1.414) if stage2 else {}
    # Stage II attends only at its deepest level, as IF-II does: attention at half resolution would be
    # a 16k-token self-attention at 256 px (15 s a step on CPU for this tiny model, 0.1 s this way).
    levels = 4 if stage2 else 2
    return UNet2DConditionModel(
        sample_size=64 if stage2 else 16, layers_per_block=1,
        block_out_channels=[8, 16, 16, 32] if stage2 else [16, 32],
        down_block_types=["ResnetDownsampleBlock2D"] * (levels - 1) + ["SimpleCrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=["SimpleCrossAttnUpBlock2D"] + ["ResnetUpsampleBlock2D"] * (levels - 1),
        in_channels=6 if stage2 else 3, out_channels=6, cross_attention_dim=_T5_WIDTH, encoder_hid_dim=_T5_WIDTH,
        attention_head_dim=8, addition_embed_type="text", addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu", norm_num_groups=8,
        **extra,
    ).eval()


def _if_scheduler(sample_max_value: float):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001,
                         beta_end=0.02, thresholding=True, dynamic_thresholding_ratio=0.95,
                         sample_max_value=sample_max_value, prediction_type="epsilon", variance_type="learned_range")


def _make_stage1(dest: Path, seed: int) -> Path:
    from diffusers import IFPipeline

    tokenizer = t5_tokenizer()
    pipe = IFPipeline(tokenizer=tokenizer, text_encoder=t5_encoder(seed, len(tokenizer), _T5_WIDTH), unet=_if_unet(seed, False),
                      scheduler=_if_scheduler(1.0), safety_checker=None, feature_extractor=None, watermarker=None,
                      requires_safety_checker=False)
    _save(pipe, dest, "IFPipeline")
    return dest


def _make_stage2(dest: Path, seed: int) -> Path:
    from diffusers import DDPMScheduler, IFSuperResolutionPipeline

    noising = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001,
                            beta_end=0.02)
    pipe = IFSuperResolutionPipeline(tokenizer=t5_tokenizer(), text_encoder=None, unet=_if_unet(seed, True),
                                     scheduler=_if_scheduler(1.5), image_noising_scheduler=noising,
                                     safety_checker=None, feature_extractor=None, watermarker=None,
                                     requires_safety_checker=False)
    _save(pipe, dest, "IFSuperResolutionPipeline")
    return dest


def _save(pipe, dest: Path, class_name: str) -> None:
    import torch

    from engine.testmodels import randomize

    generator = torch.Generator().manual_seed(len(class_name))
    for name in ("text_encoder", "unet"):
        module = getattr(pipe, name, None)
        if module is not None:
            randomize(module, generator, full=False)
    pipe.save_pretrained(dest, safe_serialization=True)
    index_path = dest / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    assert index["_class_name"] == class_name
    index.update(_RELEASE_EXTRAS)
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")

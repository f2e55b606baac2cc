"""A tiny random-weight depth model (``depth-anything`` in ``easel make-test-model``): Depth Anything V2
Small's architecture and settings (a DINOv2 backbone, DPT neck, relative-depth head, its 14-px patches
and image processor) at a few hundred KB, written as the Hugging Face folder a real one comes as
(config.json, preprocessor_config.json, model.safetensors). For the depth preprocessor's tests and
demos. Worker thread (builds torch modules).
"""

from __future__ import annotations

from pathlib import Path


def write(dest: Path, seed: int = 0) -> Path:
    """Write the tiny depth model folder ``dest``; returns it."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=4, image_size=56,
                            patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                                 head_hidden_size=8, reassemble_hidden_size=32, reassemble_factors=[4, 2, 1, 0.5],
                                 patch_size=14, depth_estimation_type="relative")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DepthAnythingForDepthEstimation(config).eval()
    dest = Path(dest)
    model.save_pretrained(dest, safe_serialization=True)
    DPTImageProcessor(do_resize=True, size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3, do_rescale=True, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225], do_pad=False).save_pretrained(dest)
    return dest

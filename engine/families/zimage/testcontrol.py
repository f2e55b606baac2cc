"""A tiny random-weight Z-Image ControlNet for the Z-Image test models (``controlnet-zimage-union``): the
real ``ZImageControlNetModel`` in the layout of alibaba-pai's Z-Image-Turbo-Fun-Controlnet-Union-2.1
(control layers over every layer of the tiny transformer, a trained noise-refiner control, 33 input
channels: the control latents, the inpaint mask and the masked image), sized to the tiny test
transformer (``engine.families.zimage.testmodel``); written as a diffusers folder or as one
``.safetensors`` file in the release's names. Its zero-initialised projections get clearly non-zero
weights, so a control visibly changes the image. Calling thread (builds torch modules).
"""

from __future__ import annotations

from pathlib import Path

TEST_CONTROLS = {"controlnet-zimage-union": "Z-Image ControlNet Union (Fun 2.1 layout)"}


def build(name: str, seed: int = 0):
    """The tiny ZImageControlNetModel of the test control model ``name``."""
    import torch
    from diffusers import ZImageControlNetModel

    from engine.testmodels import randomize, wake

    assert name in TEST_CONTROLS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 100 + 13)
        # sized to make_zimage_test_model's transformer: dim 32, 2 layers, 1 refiner layer, 2 heads
        model = ZImageControlNetModel(
            control_layers_places=[0, 1], control_refiner_layers_places=[0], control_in_dim=33,
            add_control_noise_refiner="control_noise_refiner", all_patch_size=(2,), all_f_patch_size=(1,),
            dim=32, n_refiner_layers=1, n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True)
    generator = torch.Generator().manual_seed(seed + 5678)
    randomize(model, generator, full=False)
    # the zero-initialised before/after projections: clearly non-zero
    wake([p for n, p in model.named_parameters() if ".before_proj." in n or ".after_proj." in n], generator)
    return model.eval()


def write(name: str, dest: Path, layout: str, seed: int = 0) -> Path:
    """Write the test control model ``name`` under ``dest``; returns the folder or file to use."""
    from engine.testmodels import write_model

    return write_model(build(name, seed), name, dest, layout)

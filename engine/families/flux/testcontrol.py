"""Tiny random-weight FLUX.1 ControlNets for the FLUX.1 test models (``controlnet-flux1-canny``, InstantX's
kind: the control image VAE-encoded and packed; ``controlnet-flux1-union``, the InstantX / Shakker-Labs
Union kind with a control-mode embedding): the real ``FluxControlNetModel`` built from the tiny test
transformer's config (``engine.families.flux.testmodel``), written as a diffusers folder or as one
``.safetensors`` file in diffusers' names. Their zero-initialised output projections get clearly
non-zero weights, so a control visibly changes the image. Calling thread (builds torch modules).
"""

from __future__ import annotations

from pathlib import Path

# make-test-model name -> (the FLUX.1 test model whose transformer it fits, Union modes or None)
TEST_CONTROLS = {"controlnet-flux1-canny": ("dev", None), "controlnet-flux1-union": ("dev", 10)}


def build(name: str, seed: int = 0):
    """The tiny FluxControlNetModel of the test control model ``name``."""
    import inspect

    import torch
    from diffusers import FluxControlNetModel

    from engine.families.flux.testmodel import tiny_transformer_config
    from engine.testmodels import randomize, wake

    variant, modes = TEST_CONTROLS[name]
    params = set(inspect.signature(FluxControlNetModel.__init__).parameters)
    config = {k: v for k, v in tiny_transformer_config(variant).items() if k in params}
    config["num_mode"] = modes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 100 + 11)
        model = FluxControlNetModel.from_config(config)
    generator = torch.Generator().manual_seed(seed + 4321)
    randomize(model, generator, full=False)
    # the zero-initialised projections: clearly non-zero, so the control shows
    wake([p for m in (*model.controlnet_blocks, *model.controlnet_single_blocks, model.controlnet_x_embedder)
          for p in m.parameters()], generator)
    return model.eval()


def write(name: str, dest: Path, layout: str, seed: int = 0) -> Path:
    """Write the test control model ``name`` under ``dest``; returns the folder or file to use."""
    from engine.testmodels import write_model

    return write_model(build(name, seed), name, dest, layout)

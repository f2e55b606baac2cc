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
    from engine.testmodels import randomize

    variant, modes = TEST_CONTROLS[name]
    params = set(inspect.signature(FluxControlNetModel.__init__).parameters)
    config = {k: v for k, v in tiny_transformer_config(variant).items() if k in params}
    config["num_mode"] = modes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 100 + 11)
        model = FluxControlNetModel.from_config(config)
    generator = torch.Generator().manual_seed(seed + 4321)
    randomize(model, generator, full=False)
    with torch.no_grad():  # the zero-initialised projections: clearly non-zero, so the control shows
        for module in (*model.controlnet_blocks, *model.controlnet_single_blocks, model.controlnet_x_embedder):
            for param in module.parameters():
                param.copy_(torch.empty(param.shape).normal_(0.0, 0.3, generator=generator))
    return model.eval()


def write(name: str, dest: Path, layout: str, seed: int = 0) -> Path:
    """Write the test control model ``name`` under ``dest``; returns the folder or file to use."""
    model = build(name, seed)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if layout == "diffusers":
        folder = dest / name
        model.save_pretrained(folder, safe_serialization=True)
        return folder
    from engine.testmodels import save_safetensors

    path = dest / f"{name}.safetensors"
    save_safetensors(path, {k: v.contiguous() for k, v in model.state_dict().items()})
    return path

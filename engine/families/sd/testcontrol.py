"""Tiny random-weight ControlNets for the SD test models (``controlnet-sd15-canny``,
``controlnet-sdxl-canny``, ``controlnet-sdxl-union``: a ``ControlNetUnionModel`` as xinsir's ProMax, 8 modes):
the real ControlNet architecture, built from the tiny test UNet's config
as ``ControlNetModel.from_unet`` does (so it fits the ``sd15`` / ``sdxl`` test models), written as a
diffusers folder or as one ``.safetensors`` file: SD 1.5's in A1111's original layout
(``control_model.*``, as lllyasviel's releases are), SDXL's in diffusers' layout (as the SDXL
ControlNets people put in ``models/ControlNet`` are, e.g. ``diffusers_xl_canny_mid.safetensors``). The zero convolutions get clearly non-zero random weights, so a
control visibly changes the image. Worker thread (builds torch modules).
"""

from __future__ import annotations

import re
from pathlib import Path

# make-test-model name -> (the SD test model it fits, its kind)
TEST_CONTROLS = {"controlnet-sd15-canny": ("sd15", "canny"), "controlnet-sdxl-canny": ("sdxl", "canny"),
                 "controlnet-sdxl-union": ("sdxl", "union")}


def build(name: str, seed: int = 0):
    """The tiny ControlNetModel of the test control model ``name``."""
    import torch
    from diffusers import ControlNetModel, ControlNetUnionModel, UNet2DConditionModel

    from engine.testmodels import build_configs, randomize, wake

    family, kind = TEST_CONTROLS[name]
    unet_config = dict(build_configs(family)["unet"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 100 + 7)
        unet = UNet2DConditionModel.from_config(unet_config)
        if kind == "union":  # xinsir's ProMax: 8 modes, its control transformer as wide as the first block
            config = dict(ControlNetUnionModel.from_unet(unet, load_weights_from_unet=False).config)
            config.pop("_use_default_values", None)  # else from_config keeps the defaults for these
            width = unet_config["block_out_channels"][0]
            model = ControlNetUnionModel.from_config({**config, "num_control_type": 8, "num_trans_head": 2,
                                                      "num_trans_channel": width, "num_proj_channel": width})
        else:
            model = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    generator = torch.Generator().manual_seed(seed + 1234)
    randomize(model, generator, full=False)
    extra = (model.spatial_ch_projs,) if kind == "union" else ()
    # the zero convolutions: clearly non-zero, so the control shows
    wake([p for m in (*model.controlnet_down_blocks, model.controlnet_mid_block,
                      model.controlnet_cond_embedding.conv_out, *extra) for p in m.parameters()], generator)
    return model.eval()


def write(name: str, dest: Path, layout: str, seed: int = 0) -> Path:
    """Write the test control model ``name`` under ``dest``; returns the folder or file to use."""
    from engine.testmodels import write_model

    model = build(name, seed)
    state = None
    if layout != "diffusers" and TEST_CONTROLS[name][0] != "sdxl":  # SD 1.5 single files: the original layout
        state = to_original_layout(model.state_dict(), model.config.layers_per_block)
    return write_model(model, name, dest, layout, state)


def to_original_layout(state: dict, layers_per_block: int) -> dict:
    """diffusers ControlNetModel weights -> A1111's original keys (``control_model.*``)."""
    from engine.ldm_layout import unet_to_original

    shared, own = {}, {}
    for key, value in state.items():
        (own if key.startswith(("controlnet_", "controlnet_cond_embedding.")) else shared)[key] = value
    out = {f"control_model.{k}": v for k, v in unet_to_original(shared, layers_per_block).items()}
    for key, value in own.items():
        if m := re.match(r"controlnet_cond_embedding\.conv_in\.(.+)", key):
            new = f"input_hint_block.0.{m.group(1)}"
        elif m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.+)", key):
            new = f"input_hint_block.{2 * (int(m.group(1)) + 1)}.{m.group(2)}"
        elif m := re.match(r"controlnet_cond_embedding\.conv_out\.(.+)", key):
            blocks = {int(k.split(".")[2]) for k in own if k.startswith("controlnet_cond_embedding.blocks.")}
            new = f"input_hint_block.{2 * (max(blocks) + 2)}.{m.group(1)}"
        elif m := re.match(r"controlnet_down_blocks\.(\d+)\.(.+)", key):
            new = f"zero_convs.{m.group(1)}.0.{m.group(2)}"
        elif m := re.match(r"controlnet_mid_block\.(.+)", key):
            new = f"middle_block_out.0.{m.group(1)}"
        else:
            raise ValueError(f"{key}: no original-layout name")
        out[f"control_model.{new}"] = value
    return out

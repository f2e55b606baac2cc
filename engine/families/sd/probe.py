"""The SD family's folder probe: SD 1.x / 2.x / SDXL diffusers folders (base, inpainting, Turbo).
Single ``.safetensors`` checkpoints are told apart by ``engine.files.kinds`` from their headers.
Stdlib only; any thread.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsupportedModel
from engine.files.folders import listed, missing_parts, read_json, weight_files
from engine.files.headers import quote, read_header
from engine.files.kinds import looks_turbo

PIPELINES = (
    "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline",
)


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    """ModelInfo for an SD diffusers folder (``result``: engine.files.folders' ModelInfo builder)."""
    xl = listed(index, "text_encoder_2") or cls.startswith("StableDiffusionXL")
    if xl and not listed(index, "text_encoder"):
        return result("SDXL refiner models are not supported yet", UnsupportedModel, family="sdxl")
    parts = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] + (["text_encoder_2", "tokenizer_2"] if xl else [])
    missing = [m for part in parts for m in missing_parts(root, part)]
    if missing:
        return result("incomplete diffusers folder: missing " + ", ".join(missing), ModelError)
    for part in parts:
        for weights in weight_files(root / part):
            read_header(weights)
    unet = read_json(root, "unet/config.json")
    if xl:
        family = "sdxl"
    else:
        act = read_json(root, "text_encoder/config.json").get("hidden_act")
        family = "sd2" if act == "gelu" else "sd1"
    scheduler = read_json(root, "scheduler/scheduler_config.json")
    prediction = "v_prediction" if scheduler.get("prediction_type") == "v_prediction" else "epsilon"
    channels = unet.get("in_channels", 4)
    name = root.name or root.resolve().name
    turbo = looks_turbo(f"{name} {index.get('_name_or_path', '')}", {})
    if channels == 4:
        info, error = result(None, None, "checkpoint", family, prediction)
        return (dataclasses.replace(info, variant="turbo") if turbo else info), error
    if channels == 9:
        return result(None, None, "inpaint", family, prediction)
    return result(f"the UNet takes {quote(str(channels))[1:-1]} input channels (4 = normal, 9 = inpainting): "
                  "this kind of model is not supported yet", UnsupportedModel, "unknown", family, prediction)

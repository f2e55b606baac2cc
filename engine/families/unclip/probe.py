"""The Stable unCLIP folder probe (stabilityai/stable-diffusion-2-1-unclip layout): a CLIP image
embedding, noised by ``noise_level``, conditions an SD 2.x UNet. Stdlib only; any thread."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsupportedModel
from engine.files.folders import parts_problem, read_json

PIPELINES = ("StableUnCLIPImg2ImgPipeline", "StableUnCLIPPipeline")
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "image_encoder", "image_normalizer",
         "image_noising_scheduler", "feature_extractor")
PRIOR_PROBLEM = (
    "Stable unCLIP text-to-image (StableUnCLIPPipeline) needs the Karlo prior model, which Easel does not run: "
    "use the image-variations model (stable-diffusion-2-1-unclip) with Variations"
)


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    if cls == "StableUnCLIPPipeline":
        return result(PRIOR_PROBLEM, UnsupportedModel, family="unclip")
    problem, error = parts_problem(root, PARTS, "Stable unCLIP")
    if problem is not None:
        return result(problem, error, family="unclip")
    scheduler = read_json(root, "scheduler/scheduler_config.json")
    prediction = "v_prediction" if scheduler.get("prediction_type") == "v_prediction" else "epsilon"
    info, error = result(None, None, "checkpoint", "unclip", prediction)
    return dataclasses.replace(info, variant="unclip"), error

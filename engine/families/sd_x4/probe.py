"""The SD x4 upscaler folder probe (StableDiffusionUpscalePipeline). Stdlib only; any thread."""

from __future__ import annotations

from pathlib import Path

from engine.api import ModelError, ModelInfo
from engine.files.folders import parts_problem

PIPELINES = ("StableDiffusionUpscalePipeline",)
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "low_res_scheduler")
FAMILY = "sd-x4-upscaler"


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    problem, error = parts_problem(root, PARTS, "x4 upscaler")
    return result(problem, error, kind="upscaler", family=FAMILY)

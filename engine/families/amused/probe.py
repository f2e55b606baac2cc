"""The aMUSEd folder probe (VQ-GAN tokens + masked transformer): one folder runs text-to-image,
img2img and inpaint. Stdlib only; any thread."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo
from engine.files.folders import parts_problem

PIPELINES = ("AmusedPipeline", "AmusedImg2ImgPipeline", "AmusedInpaintPipeline")
PARTS = ("transformer", "vqvae", "text_encoder", "tokenizer", "scheduler")


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    problem, error = parts_problem(root, PARTS, "aMUSEd")
    if problem is not None:
        return result(problem, error, family="amused")
    info, error = result(None, None, "checkpoint", "amused")
    return dataclasses.replace(info, variant="amused"), error

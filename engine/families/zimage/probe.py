"""The Z-Image folder probe (Tongyi-MAI/Z-Image-Turbo and Z-Image layouts, also as Hugging Face cache
snapshots): a single-stream DiT over the 16-channel FLUX VAE, conditioned on a Qwen3 text encoder.
Turbo (distilled: about 8 steps, no CFG) is told from Base by the name the folder or its repo goes by.
Stdlib only; any thread.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo
from engine.files.hub import repo_name
from engine.files.folders import parts_problem

PIPELINES = ("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline")
PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def is_turbo(root: Path, index: dict) -> bool:
    """Z-Image-Turbo (and fine-tunes named after it): said by the folder's or repo's name, or the
    ``_name_or_path`` model_index.json keeps."""
    return "turbo" in f"{repo_name(root)} {index.get('_name_or_path', '')}".lower()


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    problem, error = parts_problem(root, PARTS, "Z-Image")
    if problem is not None:
        return result(problem, error, family="zimage")
    info, error = result(None, None, "checkpoint", "zimage")
    return dataclasses.replace(info, name=repo_name(root), variant="turbo" if is_turbo(root, index) else ""), error

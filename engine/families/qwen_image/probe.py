"""The Qwen-Image folder probe (Qwen/Qwen-Image layout, also as a Hugging Face cache snapshot): a 20B
MMDiT over the Wan-style 16-channel VAE, conditioned on Qwen2.5-VL. The Edit models (instruction
edits from an input image) are named and refused in one line for now. Stdlib only; any thread.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsupportedModel
from engine.files.hub import repo_name
from engine.files.folders import parts_problem

RUNS = ("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline")
EDITS = ("QwenImageEditPipeline", "QwenImageEditPlusPipeline", "QwenImageEditInpaintPipeline")
PIPELINES = RUNS + EDITS
PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
EDIT_PROBLEM = ("Qwen-Image-Edit models (instruction edits of an image) are not supported yet; "
                "Qwen-Image itself (text to image, img2img, inpaint) is")


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    if cls in EDITS:
        return result(EDIT_PROBLEM, UnsupportedModel, family="qwen_image")
    problem, error = parts_problem(root, PARTS, "Qwen-Image")
    if problem is not None:
        return result(problem, error, family="qwen_image")
    info, error = result(None, None, "checkpoint", "qwen_image")
    return dataclasses.replace(info, name=repo_name(root)), error

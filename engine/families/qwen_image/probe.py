"""The Qwen-Image folder probe (Qwen/Qwen-Image layout, also as a Hugging Face cache snapshot): a 20B
MMDiT over the Wan-style 16-channel VAE, conditioned on Qwen2.5-VL. The Edit models (Qwen-Image-Edit,
Edit Plus: instruction edits of an input image, Plus with extra reference images) are the same modules
plus Qwen2.5-VL's processor, told by their pipeline class. Stdlib only; any thread.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo
from engine.files.hub import repo_name
from engine.files.folders import parts_problem

RUNS = ("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline")
# pipeline class -> variant ("edit": Qwen-Image-Edit; "edit-plus": Edit 2509 and later, several input images)
EDITS = {"QwenImageEditPipeline": "edit", "QwenImageEditInpaintPipeline": "edit",
         "QwenImageEditPlusPipeline": "edit-plus"}
PIPELINES = RUNS + tuple(EDITS)
PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    variant = EDITS.get(cls, "")
    label = "Qwen-Image-Edit" if variant else "Qwen-Image"
    problem, error = parts_problem(root, PARTS + (("processor",) if variant else ()), label)
    if problem is not None:
        return result(problem, error, family="qwen_image")
    info, error = result(None, None, "checkpoint", "qwen_image")
    return dataclasses.replace(info, name=repo_name(root), variant=variant), error

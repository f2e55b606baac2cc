"""The SD 3.5 folder probe: StableDiffusion3 diffusers folders (and HF cache snapshots of them), with
the variant told from the transformer config (Medium is MMDiT-X: dual attention layers) and the name
(Large Turbo). The T5 encoder (``text_encoder_3``) may be left out, as diffusers allows. Stdlib only;
any thread.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo
from engine.files.hub import repo_name
from engine.files.folders import listed, parts_problem, read_json
from engine.files.kinds import looks_turbo

PIPELINES = ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline")
PARTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
T5_PARTS = ("text_encoder_3", "tokenizer_3")


def variant_of(transformer: dict, name: str) -> str:
    """"medium" (MMDiT-X), "sd3-medium" (SD 3.0 Medium: no q/k norm), "turbo" (Large Turbo) or "large"."""
    if transformer.get("dual_attention_layers"):
        return "medium"
    if not transformer.get("qk_norm"):
        return "sd3-medium"
    return "turbo" if looks_turbo(name, {}) else "large"


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    with_t5 = listed(index, "text_encoder_3")
    problem, error = parts_problem(root, PARTS + (T5_PARTS if with_t5 else ()), "SD 3.5")
    if problem is not None:
        return result(problem, error, family="sd3")
    transformer = read_json(root, "transformer/config.json")
    name = f"{repo_name(root)} {index.get('_name_or_path', '')}"
    info, error = result(None, None, "checkpoint", "sd3", "flow")
    return dataclasses.replace(info, variant=variant_of(transformer, name)), error

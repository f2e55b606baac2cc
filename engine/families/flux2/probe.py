"""The FLUX.2 folder probe: diffusers folders (and Hugging Face cache snapshots) of
Flux2KleinPipeline and its inpaint sibling, and of Flux2Pipeline (FLUX.2 [dev], variant "dev": the
32B guidance-distilled transformer with the Mistral 3 Small text encoder, whose tokenizer files are
found in the folder or in the Hugging Face cache). Distilled (4 steps, no CFG) and base (about 50 steps with
CFG) are told by model_index.json's ``is_distilled``, which the pipeline itself reads; 4B and 9B by
the transformer config's text width (``joint_attention_dim``: Qwen3-4B's or Qwen3-8B's three stacked
hidden states). Stdlib only; any thread.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsupportedModel
from engine.files.folders import parts_problem, read_json
from engine.files.hub import repo_name

FAMILY_NAME = "flux2"
PIPELINES = ("Flux2KleinPipeline", "Flux2KleinInpaintPipeline", "Flux2Pipeline")
PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
LATENT_CHANNELS = 32  # the FLUX.2 VAE's; the transformer sees them 2x2-patchified: 128 channels
# joint_attention_dim -> size: three hidden states of Qwen3-4B (3 x 2560) or Qwen3-8B (3 x 4096)
SIZES = {7680: "4b", 12288: "9b"}
DEV = "dev"  # the ModelInfo variant of FLUX.2 [dev]
DEV_PARTS = ("transformer", "vae", "text_encoder", "scheduler")  # the tokenizer: dev_tokenizer()
DEV_TOKENIZER_REPO = "black-forest-labs/FLUX.2-dev"


def variant(distilled: bool, size: str) -> str:
    """The ModelInfo variant: "distilled" or "base", with "-4b" / "-9b" when the size is known."""
    return ("distilled" if distilled else "base") + (f"-{size}" if size else "")


def is_distilled(variant_: str) -> bool:
    """Step-distilled FLUX.2 [klein] (no CFG; FLUX.2 [dev] is guidance-distilled instead: not this)."""
    return not variant_.startswith("base") and not is_dev(variant_)


def is_dev(variant_: str) -> bool:
    return variant_ == DEV


def dev_tokenizer(root: Path) -> Path:
    """The folder with FLUX.2 [dev]'s Mistral tokenizer files: the model's own ``tokenizer/``, else
    the Hugging Face cache's FLUX.2 [dev] snapshot. Raises UnsupportedModel saying which files to add."""
    from engine.files.split import hf_snapshots

    for place in [root / "tokenizer", *(snap / "tokenizer" for snap in hf_snapshots(DEV_TOKENIZER_REPO))]:
        if (place / "tokenizer.json").is_file():
            return place
    raise UnsupportedModel(str(root), "the Mistral 3 tokenizer files of FLUX.2 [dev] are not on this computer: put "
                           f"tokenizer.json and tokenizer_config.json (with chat_template.jinja) in {root / 'tokenizer'}, "
                           f"from {DEV_TOKENIZER_REPO}'s tokenizer folder")


def size_of(variant_: str) -> str:
    return variant_.partition("-")[2]


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    if cls == "Flux2Pipeline":
        return _examine_dev(root, result)
    problem, error = parts_problem(root, PARTS, "FLUX.2 [klein]")
    if problem is not None:
        return result(problem, error, family=FAMILY_NAME)
    config = read_json(root, "transformer/config.json")
    channels = config.get("in_channels", 4 * LATENT_CHANNELS)
    if channels != 4 * LATENT_CHANNELS:
        return result(f"this FLUX.2 transformer takes {channels} input channels (128 = FLUX.2 [klein]): this kind "
                      "of FLUX.2 model is not supported yet", UnsupportedModel, family=FAMILY_NAME)
    info, error = result(None, None, "checkpoint", FAMILY_NAME, "flow")
    size = SIZES.get(config.get("joint_attention_dim"), "")
    return dataclasses.replace(info, name=repo_name(root),
                               variant=variant(bool(index.get("is_distilled", False)), size)), error


def _examine_dev(root: Path, result) -> tuple[ModelInfo, type[ModelError] | None]:
    problem, error = parts_problem(root, DEV_PARTS, "FLUX.2 [dev]")
    if problem is None:
        try:
            dev_tokenizer(root)
        except UnsupportedModel as exc:
            problem, error = exc.problem, UnsupportedModel
    if problem is not None:
        return result(problem, error, family=FAMILY_NAME)
    info, error = result(None, None, "checkpoint", FAMILY_NAME, "flow")
    return dataclasses.replace(info, name=repo_name(root), variant=DEV), error

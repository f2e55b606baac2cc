"""The FLUX.1 folder probe: diffusers folders (and Hugging Face cache snapshots) of FluxPipeline and
its Fill and Kontext siblings; the variant from the transformer config and the pipeline class.
Stdlib only; any thread."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsupportedModel
from engine.files.folders import parts_problem, read_json

PIPELINES = ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline", "FluxFillPipeline", "FluxKontextPipeline",
             "FluxKontextInpaintPipeline")
PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
LATENT_CHANNELS = 16
FILL_CHANNELS = 384  # 64 noisy + 64 masked-image latents + 256 for the 8x8-packed mask


def variant_of(transformer_config: dict, cls: str = "FluxPipeline") -> str:
    """"fill" (the transformer also takes the masked image and mask), "kontext" (an instruction editor:
    [dev]'s very architecture, told by its pipeline class), "dev" (guidance-distilled: the transformer
    embeds a guidance value) or "schnell" (none)."""
    if transformer_config.get("in_channels") == FILL_CHANNELS:
        return "fill"
    if cls.startswith("FluxKontext"):
        return "kontext"
    return "dev" if transformer_config.get("guidance_embeds") else "schnell"


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    problem, error = parts_problem(root, PARTS, "FLUX.1")
    if problem is not None:
        return result(problem, error, family="flux1")
    config = read_json(root, "transformer/config.json")
    channels = config.get("in_channels", 4 * LATENT_CHANNELS)
    if channels not in (4 * LATENT_CHANNELS, FILL_CHANNELS):
        return result(f"this FLUX.1 transformer takes {channels} input channels (64 = text to image; "
                      "384 = FLUX.1 Fill): this kind of FLUX model is not supported yet", UnsupportedModel,
                      family="flux1")
    info, error = result(None, None, "checkpoint", "flux1", "flow")
    return dataclasses.replace(info, variant=variant_of(config, cls)), error

"""Model families beyond the SD/SDXL UNet pipelines, each in its own module behind one small interface.

A family module exposes ``load(info, dtype) -> Runner``; a Runner has
``generate(request, on_progress, cancel, model_hash) -> Result`` with the engine's guarantees
(progress per step, cancel within one step, seeded, the request as run recorded in the Result).
``runner_for(info)`` says which family module loads a model, or None for the SD pipelines.
"""

from __future__ import annotations

from engine.api import ModelInfo

RUNNER_FAMILIES = ("amused", "deepfloyd-if", "sd-x4-upscaler", "unclip")


def runner_for(info: ModelInfo):
    """The family module that runs ``info``, or None when the SD/SDXL engine path runs it. Any thread."""
    if info.family == "amused":
        from engine.families import amused

        return amused
    if info.family == "deepfloyd-if":
        from engine.families import deepfloyd_if

        return deepfloyd_if
    if info.family == "sd-x4-upscaler":
        from engine.families import sd_upscale

        return sd_upscale
    if info.family == "unclip":
        from engine.families import unclip

        return unclip
    return None


def upscale_request(image, model_path: str, info: ModelInfo, stored=None, seed: int | None = None):
    """The GenerationRequest that upscales ``image`` 4x with the SD x4 upscaler folder ``model_path``
    (``stored``: the image's ImageMetadata, whose prompt guides the upscaler). Any thread; raises
    InvalidRequest (one line) for an image too small or too large for it."""
    from engine.families.cascade_defaults import upscale_request as build

    return build(image, model_path, info, stored, seed)

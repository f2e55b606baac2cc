"""Model families beyond the SD/SDXL UNet pipelines, each in its own module behind one small interface.

A family module exposes ``load(info, dtype) -> Runner``; a Runner has
``generate(request, on_progress, cancel, model_hash) -> Result`` with the engine's guarantees
(progress per step, cancel within one step, seeded, the request as run recorded in the Result).
``runner_for(info)`` says which family module loads a model, or None for the SD pipelines.
"""

from __future__ import annotations

from engine.api import ModelInfo

RUNNER_FAMILIES = ("amused", "unclip")


def runner_for(info: ModelInfo):
    """The family module that runs ``info``, or None when the SD/SDXL engine path runs it. Any thread."""
    if info.family == "amused":
        from engine.families import amused

        return amused
    if info.family == "unclip":
        from engine.families import unclip

        return unclip
    return None

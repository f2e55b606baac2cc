"""The model families, one folder each behind one interface (``engine.families.base``).

``REGISTRY`` is the one list of families: adding a family is a folder plus one line here. Family
modules import torch and diffusers only when they load a model, so asking capabilities is cheap on
any thread.
"""

from __future__ import annotations

import importlib
from functools import cache

from engine.api import ModelInfo
from engine.families.base import Capabilities, Family

# module path of each family (its ``FAMILY`` instance), in the order they are asked.
REGISTRY = (
    "engine.families.sd",
    "engine.families.amused",
    "engine.families.deepfloyd_if",
    "engine.families.unclip",
    "engine.families.sd_x4",
    "engine.families.gan",
    "engine.families.sd3",
    "engine.families.flux",
    "engine.families.flux2",
    "engine.families.zimage",
    "engine.families.qwen_image",
)


@cache
def families() -> tuple[Family, ...]:
    """Every registered family. Any thread."""
    return tuple(importlib.import_module(name).FAMILY for name in REGISTRY)


@cache
def folder_probes() -> dict:
    """model_index ``_class_name`` -> the folder probe of the family that examines it (the probe
    registry ``engine.files.folders`` asks). Any thread."""
    return {cls: f.examine_folder for f in families() for cls in f.folder_pipelines}


def family_for(info: ModelInfo | None) -> Family | None:
    """The family that runs ``info``, or None when none does (a LoRA, an unknown file). Any thread."""
    if info is None:
        return None
    return next((f for f in families() if f.handles(info)), None)


def capabilities(info: ModelInfo | None) -> Capabilities | None:
    """What ``info`` can do (its family's declaration), or None for a file no family runs. Any thread."""
    family = family_for(info)
    return family.capabilities(info) if family is not None else None


def family_label(info: ModelInfo) -> str:
    """A short name of the family a file belongs to ("SD 1.x" for an SD 1.x checkpoint or LoRA,
    "aMUSEd", "GAN"), or "" when unknown. Any thread."""
    caps = capabilities(info)
    if caps is not None:
        return caps.short
    return next((label for f in families() if (label := f.family_label(info.family))), "")


def defaults(info: ModelInfo) -> dict:
    """{"width", "height", "steps", "guidance_scale", "sampler"} to start a request for ``info`` with
    (its family's defaults; "Euler a" where the family names no sampler). Any thread."""
    caps = capabilities(info)
    base = {"width": 512, "height": 512, "steps": 25, "guidance_scale": 7.0, "sampler": "Euler a"}
    return {**base, **(caps.defaults if caps is not None else {})}


def test_models() -> dict:
    """make-test-model name -> (family, TestModel) for every family's tiny test models. Any thread."""
    return {model.name: (family, model) for family in families() for model in family.test_models()}


def upscale_request(image, model_path: str, info: ModelInfo, stored=None, seed: int | None = None):
    """The GenerationRequest that upscales ``image`` with the diffusion upscaler ``info`` (the SD x4
    upscaler folder ``model_path``; ``stored``: the image's ImageMetadata, whose prompt guides it). Any
    thread; raises InvalidRequest (one line) for an image too small or too large for it."""
    from engine.api import InvalidRequest

    family = family_for(info)
    caps = family.capabilities(info) if family is not None else None
    if caps is None or caps.upscale_kind != "diffusion":
        raise InvalidRequest("model", f"{info.name if info else model_path} is not a diffusion upscaler")
    return family.upscale_request(image, model_path, info, stored, seed)


def instruction_refusal(info: ModelInfo | None) -> str:
    """"" when ``info`` edits an image by instruction (its capabilities' ``instruction_edit``), else the
    one line saying it does not and which models do (the CLI's ``easel edit``, the window's "Edit with
    words"). Any thread."""
    caps = capabilities(info)
    if caps is not None and caps.instruction_edit:
        return ""
    names = [name for f in families() for name in f.instruction_editors]
    which = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
    what = "this model" if info is None else f"{info.name} ({caps.label})" if caps is not None else info.name
    return f"{what} is not an instruction-edit model: use {which or 'a model that edits by instruction'}"


def inpaint_partner(info: ModelInfo | None, models) -> ModelInfo | None:
    """The model among ``models`` that does ``info``'s inpainting and outpainting (its family decides:
    FLUX.1 Fill for FLUX.1 [dev] / [schnell]), or None. Any thread."""
    family = family_for(info)
    return family.inpaint_partner(info, list(models)) if family is not None else None

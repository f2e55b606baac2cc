"""Restore settings from an image's metadata into the prompt panel's parameters.

The model is found among the scanned models by hash first (A1111's 10-digit SHA-256 prefix,
computed once per file version and cached in the library index), then by file name. A sampler
Easel does not have is mapped to the nearest one, and the user is told (the metadata reader's
warnings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from desktop_app.state.params import GenerationParameters
from engine.api import MAX_SIZE, MIN_SIZE, ModelInfo
from engine.metadata import ImageMetadata

_RESTORED_FIELDS = ("prompt", "negative_prompt", "width", "height", "steps", "guidance_scale", "sampler")


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".ckpt", ".pt", ".bin"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def find_model(meta: ImageMetadata, models: list[ModelInfo], hash_of: Callable[[ModelInfo], str | None]) -> ModelInfo | None:
    """The scanned model the image was made with, by hash then by file name; None if not found.

    Runs on the I/O thread: ``hash_of`` may read whole model files (cached after the first time).
    """
    usable = [m for m in models if m.usable]
    wanted_hash = meta.model_hash.lower()
    names = {n.lower() for n in (_stem(meta.model_name), _stem(meta.extra.get("Model file", ""))) if n}
    by_name = [m for m in usable if _stem(Path(m.path).name).lower() in names or m.name.lower() in names]
    if wanted_hash:
        # Cheap first: the models whose name matches, then all the others.
        for model in by_name + [m for m in usable if m not in by_name]:
            value = hash_of(model)
            if value and value.lower()[:len(wanted_hash)] == wanted_hash:
                return model
    return by_name[0] if by_name else None


def cached_hash_function(index) -> Callable[[ModelInfo], str | None]:
    """``hash_of`` for ``find_model``, caching in the library index by path, size and mtime. I/O thread."""
    from engine.files.probe import model_hash

    def hash_of(model: ModelInfo) -> str | None:
        try:
            target = Path(model.path)
            st = os.stat(target)
            cached = index.cached_model_hash(str(target), st.st_size, st.st_mtime_ns)
            if cached:
                return cached
            value = model_hash(target)
            index.store_model_hash(str(target), st.st_size, st.st_mtime_ns, value)
            return value
        except Exception:  # noqa: BLE001 - an unreadable model just does not match
            return None

    return hash_of


def apply_metadata(params: GenerationParameters, meta: ImageMetadata, model: ModelInfo | None) -> list[str]:
    """Fill ``params`` from ``meta`` (GUI thread). Returns lines to tell the user (may be empty)."""
    notes = list(meta.warnings)
    fields = meta.fields
    for name in _RESTORED_FIELDS:
        if name in fields:
            value = fields[name]
            if name in ("width", "height"):
                value = max(MIN_SIZE, min(MAX_SIZE, int(value) // 8 * 8))
            params.set(name, value)
    if "prompt" in fields and "negative_prompt" not in fields:
        params.negative_prompt = ""
    if fields.get("seed") is not None:
        params.seed = fields["seed"]
        params.seed_mode = "fixed"
    if model is not None:
        params.model = model.path
    elif meta.model_name or meta.model_hash:
        shown = meta.model_name or meta.model_hash
        notes.append(f"the model “{shown}” is not among your models; keeping the current one")
    # The hires fix: on with the image's settings when it was made with one, else off.
    params.hires = bool(fields.get("hires_scale")) and fields.get("mode", "txt2img") == "txt2img"
    for name in ("hires_scale", "hires_steps", "hires_strength", "upscaler"):
        if params.hires and name in fields:
            try:
                params.set(name, fields[name])
            except (TypeError, ValueError):
                notes.append(f"{name.replace('_', ' ')} {fields[name]} cannot be used; keeping {params.to_dict()[name]}")
    if fields.get("mode") in ("img2img", "inpaint"):
        notes.append(f"this image was made by {fields['mode']}: open its source image in the canvas to repeat it")
    return notes

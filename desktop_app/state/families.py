"""What the window knows about model families: a label for each kind of model, which settings a
model does not take (and why, in the words a tooltip shows), and the per-family defaults applied
once when the artist picks a model of another kind.

The facts come from the engine (``engine.families.defaults``); this module only words them and
decides when to apply them. GUI thread.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from PySide6.QtCore import QObject, Signal

from desktop_app.state.models import ModelCatalog
from desktop_app.state.params import GenerationParameters
from engine.api import ModelInfo
from engine.families.defaults import ALL_PARAMETERS, family_defaults, supported_parameters

FAMILY_NAMES = {
    "sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "amused": "aMUSEd", "deepfloyd-if": "DeepFloyd IF",
    "unclip": "Stable unCLIP", "sd-x4-upscaler": "SD x4 upscaler",
}
PARAMETER_WORDS = {
    "negative_prompt": "a negative prompt", "steps": "a step count", "guidance_scale": "a CFG scale",
    "sampler": "a sampler", "width": "a free image size", "height": "a free image size", "strength": "a strength",
}
TURBO_STEPS = (1, 4)


def kind_label(info: ModelInfo | None) -> str:
    """A few words for what a model is: "SD 1.x", "aMUSEd token transformer", "Turbo (1–4 steps)"…"""
    if info is None:
        return ""
    if info.kind == "upscaler":
        return "Upscaler (diffusion x4)" if info.family == "sd-x4-upscaler" else "Upscaler (GAN)"
    if info.family == "amused":
        return "aMUSEd token transformer"
    if info.family == "deepfloyd-if":
        return "DeepFloyd IF cascade"
    if info.family == "unclip":
        return "Stable unCLIP"
    base = FAMILY_NAMES.get(info.family, info.family.upper() if info.family else "")
    if info.variant == "turbo":
        return f"{base} Turbo (1–4 steps)".strip()
    if info.kind == "inpaint":
        return f"{base} inpainting".strip()
    return base


def family_name(info: ModelInfo) -> str:
    if info.variant == "turbo":
        return "Turbo models"
    return FAMILY_NAMES.get(info.family, info.name)


def unsupported(info: ModelInfo | None) -> dict[str, str]:
    """The parameters ``info`` does not take, each with the tooltip that says why."""
    if info is None or info.kind == "upscaler":
        return {}
    taken = set(supported_parameters(info))
    reasons = {p: f"{family_name(info)} do not use {PARAMETER_WORDS[p]}" if info.variant == "turbo"
               else f"{family_name(info)} does not use {PARAMETER_WORDS[p]}" for p in ALL_PARAMETERS if p not in taken}
    if info.variant == "turbo" and "guidance_scale" not in reasons:
        reasons["guidance_scale"] = "Turbo models are distilled to run without CFG: it stays at 0"
    if info.family == "deepfloyd-if":
        side = family_defaults(info)["width"]
        for p in ("width", "height"):
            reasons.setdefault(p, f"the DeepFloyd IF cascade makes {side}×{side} images (a 64 px image, then "
                                  "its super-resolution stages)")
    return reasons


def step_range(info: ModelInfo | None) -> tuple[int, int] | None:
    """A narrower step range than the engine's for this model (Turbo: 1–4), or None."""
    return TURBO_STEPS if info is not None and info.variant == "turbo" else None


def size_presets(info: ModelInfo | None) -> tuple[tuple[int, int], ...] | None:
    """The only sizes a model makes (the IF cascade's), or None for any size."""
    if info is not None and info.family == "deepfloyd-if":
        side = family_defaults(info)["width"]
        return ((side, side),)
    return None


def with_native_size(presets: tuple[tuple[int, int], ...], info: ModelInfo | None) -> tuple[tuple[int, int], ...]:
    """``presets`` with the model's own size first when it is not among them (aMUSEd-256: 256 × 256)."""
    if info is None or info.kind == "upscaler":
        return presets
    d = family_defaults(info)
    native = (d["width"], d["height"])
    return presets if native in presets else (native, *presets)


def mode_blocked(info: ModelInfo | None, mode: str) -> str:
    """Why Generate in ``mode`` ("txt2img" | "img2img" | "inpaint") cannot run with ``info`` ("" when it can)."""
    if info is None:
        return ""
    if info.family == "unclip" and mode == "txt2img":
        return "Stable unCLIP makes variations of an image: use Variations, or give an image (Image to image)"
    if info.family == "unclip" and mode == "inpaint":
        return "Stable unCLIP makes variations of a whole image: choose Image to image, or use Variations"
    if info.family == "deepfloyd-if" and mode != "txt2img":
        return "the DeepFloyd IF cascade makes new images only: choose New image"
    return ""


class ModelDefaults(QObject):
    """Applies a family's defaults (size, steps, CFG, sampler) once when the artist picks a model of
    another kind (SD 1.5 → aMUSEd, SDXL → SDXL-Turbo). Switching between two models of one kind keeps
    the artist's values, and anything changed afterwards stays changed. Restoring an image's settings
    runs inside ``suspended()``, so the image's values win."""

    applied = Signal(str)  # the model path whose defaults were applied

    def __init__(self, params: GenerationParameters, catalog: ModelCatalog, parent: QObject | None = None):
        super().__init__(parent)
        self._params, self._catalog = params, catalog
        self._current = params.model
        self._pending: str | None = None  # picked before the catalog knew it
        self._suspended = 0
        params.model_changed.connect(self._on_params_model_changed)
        catalog.models_changed.connect(self._on_catalog_models_changed)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1
            self._current = self._params.model

    def _on_params_model_changed(self, path: str) -> None:
        previous, self._current = self._current, path
        if self._suspended:
            return
        info = self._catalog.find(path)
        if info is None:
            self._pending = path
            return
        self._pending = None
        old = self._catalog.find(previous) if previous else None
        if old is None or family_defaults(old) != family_defaults(info) or _profile(old) != _profile(info):
            self.apply(info)

    def _on_catalog_models_changed(self, _models: list) -> None:
        if self._pending and self._pending == self._params.model and (info := self._catalog.find(self._pending)):
            self._pending = None
            self.apply(info)

    def apply(self, info: ModelInfo) -> None:
        """Set the family's defaults in the parameters now."""
        for name, value in family_defaults(info).items():
            self._params.set(name, value)
        self.applied.emit(info.path)


def _profile(info: ModelInfo) -> tuple[str, str]:
    return (info.family if info.family in ("amused", "deepfloyd-if", "unclip") else "sd", info.variant)

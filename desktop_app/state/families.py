"""What the window knows about model families: a label for each kind of model, which settings a
model does not take (and why, in the words a tooltip shows), and the per-family defaults applied
once when the artist picks a model of another kind.

The facts come from the engine: each family's capabilities (``engine.families.capabilities``); this
module never names a family, it only asks and decides when to apply the defaults. GUI thread.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from PySide6.QtCore import QObject, Signal

from desktop_app.state.models import ModelCatalog
from desktop_app.state.params import GenerationParameters
from engine import families
from engine.api import Mode, ModelInfo


def kind_label(info: ModelInfo | None) -> str:
    """A few words for what a model is: "SD 1.x", "aMUSEd token transformer", "Turbo (1–4 steps)"…"""
    caps = families.capabilities(info)
    return caps.label if caps is not None else ""


def family_label(info: ModelInfo) -> str:
    """The family column of a model list ("SD 1.x" for a checkpoint or a LoRA, "GAN", "?")."""
    return families.family_label(info) or "?"


def unsupported(info: ModelInfo | None) -> dict[str, str]:
    """The parameters ``info`` does not take, each with the tooltip that says why."""
    caps = families.capabilities(info)
    if caps is None or caps.role == "upscaler":
        return {}
    return dict(caps.reasons)


def lora_reason(info: ModelInfo | None) -> str:
    """Why ``info`` takes no LoRA ("" when it does, or when no model is chosen yet)."""
    caps = families.capabilities(info)
    if caps is None or "lora" in caps.addons:
        return ""
    return f"{caps.label} does not take LoRAs here: a <lora:…> tag in the prompt is left out with a notice"


def step_range(info: ModelInfo | None) -> tuple[int, int] | None:
    """A narrower step range than the engine's for this model (Turbo: 1–4), or None."""
    caps = families.capabilities(info)
    return caps.step_range if caps is not None else None


def size_presets(info: ModelInfo | None) -> tuple[tuple[int, int], ...] | None:
    """The only sizes a model makes (the IF cascade's), or None for any size."""
    caps = families.capabilities(info)
    return caps.sizes if caps is not None else None


def with_native_size(presets: tuple[tuple[int, int], ...], info: ModelInfo | None) -> tuple[tuple[int, int], ...]:
    """``presets`` with the model's own size first when it is not among them (aMUSEd-256: 256 × 256)."""
    caps = families.capabilities(info)
    if caps is None or caps.role == "upscaler":
        return presets
    return presets if caps.native in presets else (caps.native, *presets)


def mode_blocked(info: ModelInfo | None, mode: str) -> str:
    """Why Generate in ``mode`` ("txt2img" | "img2img" | "inpaint" | "instruct") cannot run with ``info``
    ("" when it can)."""
    if mode == "instruct":
        return instruction_refusal(info) if info is not None else ""
    caps = families.capabilities(info)
    return caps.refusal(Mode(mode)) if caps is not None and caps.role != "upscaler" else ""


def edits_by_instruction(info: ModelInfo | None) -> bool:
    """Whether the model edits an image by an instruction (the canvas's "Edit with words")."""
    caps = families.capabilities(info)
    return caps is not None and caps.instruction_edit


def instruction_refusal(info: ModelInfo | None) -> str:
    """"" for an instruction-edit model, else the line saying it is not one and which models are."""
    return families.instruction_refusal(info)


def region_refusal(info: ModelInfo | None) -> str:
    """Why ``info`` takes no regions (areas with their own prompts; "" when it does, or when no model is chosen)."""
    caps = families.capabilities(info)
    if caps is None or caps.regions:
        return ""
    return f"{caps.label} takes no regions (areas with their own prompts)"


def inpaint_partner(info: ModelInfo | None, models: list[ModelInfo]) -> ModelInfo | None:
    """The library model that inpaints and outpaints for ``info`` (FLUX.1 Fill for FLUX.1 [dev]), or None."""
    return families.inpaint_partner(info, models)


def hires_blocked(info: ModelInfo | None) -> str:
    """Why the model cannot run the hires fix or redraw detail ("" when it can, or when none is chosen yet):
    both need a generator that runs image to image."""
    caps = families.capabilities(info)
    if caps is None:
        return ""
    if caps.role != "generator" or Mode.IMG2IMG not in caps.modes:
        return f"{caps.label} cannot refine an enlarged image: the hires fix needs a model that runs image to image"
    return ""


def latent_upscale_blocked(info: ModelInfo | None) -> str:
    """Why the model's hires fix cannot use a latent upscaler ("" when it can, or when none is chosen yet)."""
    caps = families.capabilities(info)
    if caps is None or caps.latent_upscale:
        return ""
    return (f"{caps.label} cannot use a latent upscaler: its image to image pass does not start from latents; "
            "use Lanczos or a GAN upscaler")


def makes_variations(info: ModelInfo | None) -> bool:
    """Whether the model draws variations from the image itself (Stable unCLIP) rather than by img2img."""
    caps = families.capabilities(info)
    return caps is not None and caps.role == "variations"


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
        if old is None or families.capabilities(old) != families.capabilities(info):
            self.apply(info)

    def _on_catalog_models_changed(self, _models: list) -> None:
        if self._pending and self._pending == self._params.model and (info := self._catalog.find(self._pending)):
            self._pending = None
            self.apply(info)

    def apply(self, info: ModelInfo) -> None:
        """Set the family's defaults in the parameters now."""
        for name, value in families.defaults(info).items():
            self._params.set(name, value)
        self.applied.emit(info.path)

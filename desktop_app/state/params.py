"""The parameters of the next generation, as the prompt panel edits them."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.api import (
    MAX_HIRES_SCALE,
    MAX_SEED,
    MAX_STEPS,
    MEMORY_PRESETS,
    PLAIN_UPSCALER,
    SAMPLERS,
    SPEEDS,
    GenerationRequest,
    random_seed,
)

SIZE_PRESETS: tuple[tuple[int, int], ...] = (
    (512, 512),
    (512, 768),
    (768, 512),
    (768, 768),
    (1024, 1024),
    (832, 1216),
    (1216, 832),
)

DEFAULTS: dict[str, Any] = {
    "prompt": "",
    "negative_prompt": "",
    "model": "",
    "width": 512,
    "height": 512,
    "steps": 25,
    "guidance_scale": 7.0,
    "sampler": "Euler a",
    "seed_mode": "random",  # "random" | "fixed"
    "seed": 0,
    "batch_count": 1,
    "memory_preset": "auto",
    "speed": "standard",  # engine.api.SPEEDS
    # Editing the canvas (the mode decides whether Generate makes a new image or edits the canvas).
    # "txt2img" | "img2img" | "inpaint" | "instruct" (the canvas is the source; "instruct": Edit with words,
    # for an instruction-edit model: the prompt says what to change)
    "edit_mode": "txt2img",
    "strength": 0.75,
    "only_masked": True,
    "mask_padding": 32,
    "mask_blur": 8,
    # The hires fix (new images only): enlarge by hires_scale with upscaler, then refine at that size.
    "hires": False,
    "hires_scale": 2.0,
    "hires_steps": 0,  # 0: as many as steps
    "hires_strength": 0.5,
    "upscaler": PLAIN_UPSCALER,  # or a GAN upscaler's file (or its name in the model library)
}

EDIT_MODES: tuple[str, ...] = ("txt2img", "img2img", "inpaint", "instruct")

# Not kept in settings.json: the canvas (the source of img2img / inpaint) lives for this session
# only, so a restart must not come back in an editing mode with nothing to edit.
_SESSION_ONLY = ("edit_mode",)

_TYPES: dict[str, type] = {k: type(v) for k, v in DEFAULTS.items()}


def _prop(name: str) -> property:
    def get(self: GenerationParameters) -> Any:
        return self._values[name]

    def set_(self: GenerationParameters, value: Any) -> None:
        self.set(name, value)

    return property(get, set_)


class GenerationParameters(QObject):
    prompt_changed = Signal(str)
    negative_prompt_changed = Signal(str)
    model_changed = Signal(str)
    width_changed = Signal(int)
    height_changed = Signal(int)
    steps_changed = Signal(int)
    guidance_scale_changed = Signal(float)
    sampler_changed = Signal(str)
    seed_mode_changed = Signal(str)
    seed_changed = Signal(object)  # int up to 2**64-1: too big for a Qt int
    batch_count_changed = Signal(int)
    memory_preset_changed = Signal(str)
    speed_changed = Signal(str)
    edit_mode_changed = Signal(str)
    strength_changed = Signal(float)
    only_masked_changed = Signal(bool)
    mask_padding_changed = Signal(int)
    mask_blur_changed = Signal(int)
    hires_changed = Signal(bool)
    hires_scale_changed = Signal(float)
    hires_steps_changed = Signal(int)
    hires_strength_changed = Signal(float)
    upscaler_changed = Signal(str)
    last_seed_changed = Signal(object)

    prompt = _prop("prompt")
    negative_prompt = _prop("negative_prompt")
    model = _prop("model")
    width = _prop("width")
    height = _prop("height")
    steps = _prop("steps")
    guidance_scale = _prop("guidance_scale")
    sampler = _prop("sampler")
    seed_mode = _prop("seed_mode")
    seed = _prop("seed")
    batch_count = _prop("batch_count")
    memory_preset = _prop("memory_preset")
    speed = _prop("speed")
    edit_mode = _prop("edit_mode")
    strength = _prop("strength")
    only_masked = _prop("only_masked")
    mask_padding = _prop("mask_padding")
    mask_blur = _prop("mask_blur")
    hires = _prop("hires")
    hires_scale = _prop("hires_scale")
    hires_steps = _prop("hires_steps")
    hires_strength = _prop("hires_strength")
    upscaler = _prop("upscaler")

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._values: dict[str, Any] = dict(DEFAULTS)
        self._last_seed: int | None = None

    # -- generic access -----------------------------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        value = _coerce(name, value)
        if self._values[name] == value:
            return
        self._values[name] = value
        getattr(self, f"{name}_changed").emit(value)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k not in _SESSION_ONLY}

    def load_dict(self, data: dict[str, Any]) -> None:
        """Apply saved values; anything unknown or invalid keeps its current value."""
        for name, value in data.items():
            if name in self._values and name not in _SESSION_ONLY:
                try:
                    self.set(name, value)
                except (TypeError, ValueError):
                    pass

    # -- seeds --------------------------------------------------------------------------------

    @property
    def last_seed(self) -> int | None:
        return self._last_seed

    def record_seed(self, seed: int) -> None:
        self._last_seed = seed
        self.last_seed_changed.emit(seed)

    def reuse_last_seed(self) -> bool:
        if self._last_seed is None:
            return False
        self.seed = self._last_seed
        self.seed_mode = "fixed"
        return True

    # -- the request --------------------------------------------------------------------------

    def to_request(self) -> GenerationRequest:
        """The request for the current values; raises engine.api.InvalidRequest naming a bad field.

        A random seed is drawn here, not in the engine, so the queue shows the seed each job uses.
        The hires fix applies to new images (edit mode txt2img) only.
        """
        v = self._values
        hires = {}
        if v["hires"] and v["edit_mode"] == "txt2img":
            hires = {"hires_scale": v["hires_scale"], "hires_steps": v["hires_steps"],
                     "hires_strength": v["hires_strength"], "upscaler": v["upscaler"]}
        return GenerationRequest(
            **hires,
            prompt=v["prompt"],
            negative_prompt=v["negative_prompt"],
            model=v["model"],
            width=v["width"],
            height=v["height"],
            steps=v["steps"],
            guidance_scale=v["guidance_scale"],
            sampler=v["sampler"],
            seed=v["seed"] if v["seed_mode"] == "fixed" else random_seed(),
            batch_count=v["batch_count"],
            memory_preset=v["memory_preset"],
            speed=v["speed"],
        )


def _coerce(name: str, value: Any) -> Any:
    kind = _TYPES[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false")
        return value
    if kind is float:
        value = float(value)
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError(f"{name} must be a whole number")
        value = int(value)
    elif not isinstance(value, str):
        raise TypeError(f"{name} must be text")
    if name == "sampler" and value not in SAMPLERS:
        raise ValueError(f"unknown sampler {value!r}")
    if name == "memory_preset" and value not in MEMORY_PRESETS:
        raise ValueError(f"unknown memory preset {value!r}")
    if name == "speed" and value not in SPEEDS:
        raise ValueError(f"unknown speed {value!r}")
    if name == "seed_mode" and value not in ("random", "fixed"):
        raise ValueError("seed_mode must be random or fixed")
    if name == "seed" and not 0 <= value <= MAX_SEED:
        raise ValueError("seed out of range")
    if name == "edit_mode" and value not in EDIT_MODES:
        raise ValueError(f"unknown mode {value!r}")
    if name == "strength" and not 0.0 < value <= 1.0:
        raise ValueError("strength must be above 0 and at most 1")
    if name == "hires_scale" and not 1.0 <= value <= MAX_HIRES_SCALE:
        raise ValueError(f"hires upscale must be from 1 to {MAX_HIRES_SCALE:g}")
    if name == "hires_steps" and not 0 <= value <= MAX_STEPS:
        raise ValueError(f"hires steps must be from 0 to {MAX_STEPS}")
    if name == "hires_strength" and not 0.0 < value <= 1.0:
        raise ValueError("hires denoising strength must be above 0 and at most 1")
    if name == "upscaler" and not value.strip():
        raise ValueError("the upscaler needs a name")
    if name in ("mask_padding", "mask_blur") and not 0 <= value <= 256:
        raise ValueError(f"{name} must be from 0 to 256")
    return value

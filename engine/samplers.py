"""A1111 sampler names to diffusers schedulers (the mapping diffusers documents for A1111 users)."""

from __future__ import annotations

from typing import Any

from engine.api import SAMPLERS, InvalidRequest

# A1111's k-diffusion samplers space timesteps evenly over the whole range ("linspace"); its DDIM
# uses uniform steps offset by one ("leading", steps_offset 1). Set explicitly, so a model gives the
# same image whether its scheduler config spells these keys out or leaves them to class defaults.
_LINSPACE = {"timestep_spacing": "linspace"}
_LEADING = {"timestep_spacing": "leading", "steps_offset": 1}

# name -> (scheduler class name, config overrides)
_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", _LINSPACE),
    "Euler a": ("EulerAncestralDiscreteScheduler", _LINSPACE),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {**_LINSPACE, "algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {**_LINSPACE, "algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {**_LINSPACE, "use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", _LEADING),
    "UniPC": ("UniPCMultistepScheduler", _LINSPACE),
    "LCM": ("LCMScheduler", _LEADING),
}
assert set(_TABLE) == set(SAMPLERS)

def scheduler_class_names() -> tuple[str, ...]:
    """The diffusers scheduler classes behind the samplers (for warming imports)."""
    return tuple(sorted({cls for cls, _ in _TABLE.values()}))


# Set in a model's scheduler config by engine.families.sd.loading for one-step (Turbo) models.
ONE_STEP_KEY = "easel_one_step"

# Keys that belong to one scheduler family and would leak into another through from_config.
_RESET = {"use_karras_sigmas": False, "algorithm_type": None, "solver_order": None}


def make_scheduler(name: str, base_config: dict[str, Any], seed: int):
    """A fresh scheduler for sampler ``name`` built on the model's own scheduler config.

    ``seed`` seeds samplers that draw noise of their own (the SDE sampler's Brownian tree), so the
    same seed gives the same image with every sampler.
    """
    import diffusers

    if name not in _TABLE:
        raise InvalidRequest("sampler", f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    cls_name, overrides = _TABLE[name]
    config = {k: v for k, v in dict(base_config).items() if k not in _RESET}
    config.update(overrides)
    if config.pop(ONE_STEP_KEY, False) and overrides.get("timestep_spacing") == "linspace":
        # Few-step distilled models (SD-Turbo, SDXL-Turbo): their one step must start at the last
        # training timestep ("trailing", as their own configs say); "linspace" never reaches it in one step.
        config["timestep_spacing"] = "trailing"
        # diffusers drops keys it recorded as class defaults when another class is built from them.
        config["_use_default_values"] = [k for k in config.get("_use_default_values", []) if k != "timestep_spacing"]
    if cls_name == "DPMSolverSDEScheduler":
        config["noise_sampler_seed"] = seed
    # SD checkpoints ship a PNDM/DDIM config with 'steps_offset': 1 and 'set_alpha_to_one'; fine for all.
    return getattr(diffusers, cls_name).from_config(config)

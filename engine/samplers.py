"""A1111 sampler names to diffusers schedulers (the mapping diffusers documents for A1111 users)."""

from __future__ import annotations

from typing import Any

from engine.api import SAMPLERS, InvalidRequest

# name -> (scheduler class name, config overrides)
_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
assert set(_TABLE) == set(SAMPLERS)

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
    if cls_name == "DPMSolverSDEScheduler":
        config["noise_sampler_seed"] = seed
    # SD checkpoints ship a PNDM/DDIM config with 'steps_offset': 1 and 'set_alpha_to_one'; fine for all.
    return getattr(diffusers, cls_name).from_config(config)

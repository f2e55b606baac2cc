"""Per-family generation defaults, applied when a model is picked (app) or a size is left out (CLI).

Pure data, no torch: any thread.
"""

from __future__ import annotations

from engine.api import ModelInfo

# Parameters each family takes; the UI disables the others.
ALL_PARAMETERS = ("negative_prompt", "steps", "guidance_scale", "sampler", "width", "height", "strength")
_NO_SAMPLER = tuple(p for p in ALL_PARAMETERS if p != "sampler")


def family_defaults(info: ModelInfo) -> dict:
    """{"width", "height", "steps", "guidance_scale", "sampler"} for a model's family/variant."""
    if info.variant == "turbo":
        # SD-Turbo and SDXL-Turbo: trained at 512 px for 1-4 steps without classifier-free guidance.
        return {"width": 512, "height": 512, "steps": 1, "guidance_scale": 0.0, "sampler": "Euler a"}
    if info.family == "amused":
        side = 512 if "512" in info.name else 256
        return {"width": side, "height": side, "steps": 12, "guidance_scale": 10.0, "sampler": "Euler a"}
    if info.family in ("deepfloyd-if", "sd-x4-upscaler"):
        from engine.families.cascade_defaults import cascade_defaults

        return cascade_defaults(info)
    if info.family == "unclip":
        # stable-diffusion-2-1-unclip: 768 px, v-prediction; diffusers' own defaults of 20 steps and CFG 10.
        return {"width": 768, "height": 768, "steps": 20, "guidance_scale": 10.0, "sampler": "DDIM"}
    if info.family == "sdxl":
        side = 1024
    elif info.family == "sd2" and info.prediction_type == "v_prediction" and not info.inpainting:
        side = 768
    else:
        side = 512
    return {"width": side, "height": side, "steps": 25, "guidance_scale": 7.0, "sampler": "Euler a"}


def supported_parameters(info: ModelInfo) -> tuple[str, ...]:
    """The request fields this model uses; the others are ignored by its runner (disable them in a UI)."""
    if info.family == "amused":
        return _NO_SAMPLER
    if info.family in ("deepfloyd-if", "sd-x4-upscaler"):
        from engine.families.cascade_defaults import cascade_parameters

        return cascade_parameters(info)
    if info.variant == "turbo":
        return tuple(p for p in ALL_PARAMETERS if p not in ("negative_prompt",))
    return ALL_PARAMETERS

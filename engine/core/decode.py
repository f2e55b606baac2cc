"""Latents to pixels with the guard every family gets: a NaN/infinite or all-black decode runs the
VAE once more in fp32, and if that is bad too the job fails with one plain line (never a silent
black image). Runs on the engine thread.
"""

from __future__ import annotations

import logging

from engine.api import EaselError

log = logging.getLogger(__name__)

BLANK = ("the image came out blank: the model produced invalid values (NaN) even with the VAE in full precision; "
         "try another VAE, lower LoRA weights or a lower CFG scale")
RETRIED = "The VAE produced an invalid (black) image in half precision; Easel decoded it again in full precision."


def bad_pixels(decoded) -> bool:
    """NaN/inf anywhere, or every pixel black (decoded values live in [-1, 1])."""
    import torch

    return not bool(torch.isfinite(decoded).all()) or float(decoded.max()) <= -0.99


def decode(vae, latents, notices: list[str], *, upcast: bool = False, unscale: bool = True):
    """``latents`` through ``vae`` to a float32 tensor in [-1, 1] (NCHW; a video VAE's NCFHW), guarded
    as the module says.

    ``upcast``: decode in fp32 from the start (a VAE known to overflow in fp16, such as SDXL's own).
    ``unscale``: undo the VAE's ``scaling_factor`` (and ``latents_mean``/``latents_std``, or
    ``shift_factor``, where the config has them) first; False for latents already in the VAE's space.
    """
    import torch

    decoded = _decode_with(vae, latents, torch.float32 if upcast else vae.dtype, unscale)
    if bad_pixels(decoded):
        log.info("decode gave %s; retrying the VAE in fp32", "NaN/inf" if not torch.isfinite(decoded).all() else "black")
        if vae.dtype == torch.float32 and not upcast:
            raise EaselError(BLANK)
        decoded = _decode_with(vae, latents, torch.float32, unscale)
        if bad_pixels(decoded):
            raise EaselError(BLANK)
        if RETRIED not in notices:
            notices.append(RETRIED)
    return decoded


def _decode_with(vae, latents, dtype, unscale: bool):
    import torch

    original = vae.dtype
    if dtype != original:
        vae.to(dtype)
    try:
        latents = latents.to(dtype)
        if unscale:
            config = vae.config
            mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
            if mean is not None and std is not None:
                shape = (1, -1) + (1,) * (latents.ndim - 2)  # also a video VAE's (B, C, frames, H, W)
                mean = torch.tensor(mean).view(shape).to(latents)
                std = torch.tensor(std).view(shape).to(latents)
                latents = latents * std / (getattr(config, "scaling_factor", None) or 1.0) + mean
            else:  # the FLUX VAE (FLUX, Z-Image) also shifts its latents
                latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        return vae.decode(latents, return_dict=False)[0].float()
    finally:
        if dtype != original:
            vae.to(original)

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

    # One pass: NaN propagates into both, +inf shows in the max and -inf in the min.
    low, high = torch.aminmax(decoded.detach())
    return not (bool(torch.isfinite(low)) and bool(torch.isfinite(high))) or float(high) <= -0.99


def decode(vae, latents, notices: list[str], *, upcast: bool = False, unscale: bool = True):
    """``latents`` through ``vae`` to a float32 tensor in [-1, 1] (NCHW; a video VAE's NCFHW), guarded
    as the module says.

    ``upcast``: decode in fp32 from the start (a VAE known to overflow in fp16, such as SDXL's own).
    ``unscale``: undo the VAE's ``scaling_factor`` (and ``latents_mean``/``latents_std``, or
    ``shift_factor``, where the config has them) first; False for latents already in the VAE's space.
    """
    return guarded(vae, lambda dtype: _decode_with(vae, latents, dtype, unscale), notices, upcast=upcast)


def guarded(vae, decode_at, notices: list[str], *, upcast: bool = False):
    """The guard itself, for any decoder: ``decode_at(dtype)`` decodes with ``vae`` cast to ``dtype``
    and returns float pixels in [-1, 1]; a bad result is decoded once more in fp32, and a second bad
    one fails with ``BLANK``. (A VQ-GAN's token decode uses this directly.)"""
    import torch

    original = vae.dtype  # once: asking a model its dtype walks its modules
    decoded = _cast_while(vae, original, torch.float32 if upcast else original, decode_at)
    if bad_pixels(decoded):
        log.info("decode gave %s; retrying the VAE in fp32", "NaN/inf" if not torch.isfinite(decoded).all() else "black")
        if original == torch.float32 and not upcast:
            raise EaselError(BLANK)
        decoded = _cast_while(vae, original, torch.float32, decode_at)
        if bad_pixels(decoded):
            raise EaselError(BLANK)
        if RETRIED not in notices:
            notices.append(RETRIED)
    return decoded


def _cast_while(vae, original, dtype, decode_at):
    if dtype != original:
        vae.to(dtype)
    try:
        return decode_at(dtype)
    finally:
        if dtype != original:
            vae.to(original)


def _decode_with(vae, latents, dtype, unscale: bool):
    import torch

    latents = latents.to(dtype)
    if unscale:
        config = vae.config
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            shape = (1, -1) + (1,) * (latents.ndim - 2)  # also a video VAE's (B, C, frames, H, W)
            mean = torch.tensor(mean).view(shape).to(latents)
            std = torch.tensor(std).view(shape).to(latents)
            latents = latents * std / (getattr(config, "scaling_factor", None) or 1.0) + mean
        else:  # the FLUX / SD3 VAEs (FLUX, Z-Image, SD 3.5) also shift their latents
            latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
    return vae.decode(latents, return_dict=False)[0].float()


def check_pixels(pixels, what: str, *, black: bool = True) -> None:
    """The guard for output with no decoder to rerun (a pixel-space model, a GAN tile): NaN/inf or
    (with ``black``) all-black ``pixels`` (floats in [-1, 1]) fail with one plain line naming what
    made them. A tile of a larger image may be black for real: pass ``black=False`` there."""
    import torch

    if not bool(torch.isfinite(pixels).all()) or (black and bad_pixels(pixels)):
        raise EaselError(f"{what} produced an invalid image (NaN values or all black); "
                         "try another memory preset or the CPU")

"""Tiny-autoencoder files (madebyollin's TAESD family: TAESD, TAESDXL, TAEF1, TAEF2), told by their
safetensors headers alone, for the live previews (``engine.core.previews``).

A folder with ``config.json`` naming ``AutoencoderTiny`` is one (``engine.models.scan``); so is a single
file in diffusers' tensor names (``decoder.layers.N.…``, as madebyollin/taef2 publishes
``taef2.safetensors``: weights only, no config) or in taesd.py's flat ones (``N.…``: ComfyUI's
``models/vae_approx/taef2_decoder.safetensors``; taesd.py's index 0 is the input clamp, so one higher).
Its latent space comes from the latent channels (32: FLUX.2; 16: FLUX.1's TAEF1 or SD 3's TAESD3, by
name; 4: SD or SDXL, by name) and TAEF2's mid-block GroupNorm pool. Stdlib only. Any thread.
"""

from __future__ import annotations

import re

KIND = "taesd"
PROBLEM = "this is a tiny autoencoder ({name}), not a checkpoint: Easel uses it for live previews"
_DIFFUSERS = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
_FLAT = re.compile(r"^(\d+)\.(.+)$")


def decoder_state(tensors: dict) -> dict | None:
    """``{"<diffusers layer index>.<rest>": value}`` for a tiny decoder's tensors (name -> anything: a
    header's tensor infos, or the tensors), or None when they are not one."""
    out = {}
    flat = not any(k.startswith("decoder.") for k in tensors)
    for key, value in tensors.items():
        m = (_FLAT if flat else _DIFFUSERS).match(key)
        if m is None:
            if flat:
                return None  # a flat decoder file holds nothing else
            continue  # a diffusers file holds its encoder.* too
        index = int(m.group(1)) - (1 if flat else 0)
        if index < 0:
            return None  # a flat encoder (its index 0 is a conv)
        out[f"{index}.{m.group(2)}"] = value
    if "0.weight" not in out or not any(k.endswith(".conv.0.weight") for k in out):
        return None
    return out


def family_of(state: dict, name: str) -> str:
    """The latent space a tiny decoder (``decoder_state`` of a header's tensor infos) decodes:
    "flux2", "flux", "sd3", "sdxl" or "sd1" ("" when its channels say none of them)."""
    shape = tuple(getattr(state.get("0.weight"), "shape", ()) or ())
    channels = shape[1] if len(shape) == 4 else 0
    low = name.lower()
    if channels == 32 and any(k.endswith(".pool.0.weight") for k in state):
        return "flux2"
    if channels == 16:
        return "flux" if "taef1" in low else "sd3" if "sd3" in low else ""
    if channels == 4:
        return "sdxl" if "xl" in low else "sd1"
    return ""

"""Memory presets for the family runners (the IF cascade, the x4 upscaler, Stable unCLIP).

The presets mean what they mean for SD (engine.devices): "fast" and "balanced" keep every stage on
the device ("balanced" and lower upscale in smaller tiles: ``X4_TILES``); "low" moves each module onto
the GPU only while it runs, so
the stages that are not running wait in system memory; "minimal" streams layer by layer. A job that
runs out of device memory runs again one preset lower, as SD jobs do. Runs on the engine thread.
"""

from __future__ import annotations

import dataclasses
import logging

from engine import devices, memory
from engine.api import OutOfMemory, RuntimeSettings

log = logging.getLogger(__name__)

# Source tile (px) of the x4 upscaler per preset: its UNet works at the source's resolution and its
# VAE decodes 4x that, so the tile bounds memory (about 1.5 GB at 128 px for the real model in fp16).
X4_TILES = {"fast": 256, "balanced": 192, "low": 128, "minimal": 128}


def place(pipe, settings: RuntimeSettings) -> None:
    """Put ``pipe`` on its device with the memory switches of ``settings`` (hooks of an earlier
    placement are removed first). Pipelines without a VAE (the IF stages) skip the VAE switches, and
    the x4 upscaler never uses diffusers' VAE tiling: it tiles the source itself (engine.families.
    sd_upscale), and VAE tiles inside those tiles would only add seams and time."""
    if hasattr(pipe, "remove_all_hooks"):
        pipe.remove_all_hooks()
    if settings.sequential_offload:
        pipe.enable_sequential_cpu_offload(device=settings.device)
    elif settings.model_offload:
        pipe.enable_model_cpu_offload(device=settings.device)
    else:
        pipe.to(settings.device)
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    elif getattr(pipe, "_easel_sliced", False):  # only undo it: disabling resets the attention processors
        pipe.disable_attention_slicing()
    pipe._easel_sliced = settings.attention_slicing
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        (vae.enable_slicing if settings.vae_slicing else vae.disable_slicing)()
        (vae.enable_tiling if settings.vae_tiling else vae.disable_tiling)()


class Placement:
    """The preset a runner's pipelines sit on, changed when a request asks for another one.

    ``family`` picks the "auto" thresholds (engine.devices). ``vae_tiling``: whether the presets that
    tile the VAE may do so (a single-pipeline runner such as Stable unCLIP); the IF stages have no
    VAE and the x4 upscaler tiles the image itself, so they keep it off."""

    def __init__(self, family: str, device: str, dtype, *, vae_tiling: bool = False):
        self.family = family
        self.device = device
        self.dtype = dtype
        self.vae_tiling = vae_tiling
        self.settings: RuntimeSettings | None = None
        self.requested = ""

    def ensure(self, requested: str, pipes) -> RuntimeSettings:
        """Place ``pipes`` for the preset ``requested`` resolves to (nothing done when already there)."""
        if requested != self.requested or self.settings is None:
            preset = devices.resolve_preset(requested, self.device, self.family)
            self.requested = requested
            self.apply(preset, pipes)
        return self.settings

    def apply(self, preset: str, pipes) -> None:
        settings = devices.runtime_settings(preset, self.device, self.dtype)
        if not self.vae_tiling:
            settings = dataclasses.replace(settings, vae_tiling=False)
        if settings != self.settings:
            for pipe in pipes:
                place(pipe, settings)
            self.settings = settings

    def run(self, job, pipes, notices: list[str]):
        """``job()``, run again one preset lower each time the device runs out of memory; the preset
        that worked stays. Raises OutOfMemory (one line) when even "minimal" fails."""
        import torch

        first = self.settings.preset
        while True:
            try:
                out = job()
                break
            except torch.OutOfMemoryError:
                devices.empty_cache(self.device)
                lower = memory.lower(self.settings.preset)
                if lower is None:
                    raise OutOfMemory("the GPU ran out of memory even with the lowest memory preset (“minimal”); "
                                      "try a smaller size or close other programs that use the GPU") from None
                log.warning("out of memory with preset %s; retrying with %s", self.settings.preset, lower)
                for pipe in pipes:
                    if hasattr(pipe, "maybe_free_model_hooks"):
                        pipe.maybe_free_model_hooks()
                self.apply(lower, pipes)
        if self.settings.preset != first:
            notices.insert(0, f"The GPU ran out of memory with the “{first}” memory preset; Easel finished the job "
                              f"with “{self.settings.preset}”.")
        return out


def free(pipes, device: str) -> None:
    """Drop the pipelines' hooks and give their device memory back (the caller drops its references)."""
    for pipe in pipes:
        if hasattr(pipe, "remove_all_hooks"):
            pipe.remove_all_hooks()
    devices.empty_cache(device)

"""Placement: the memory preset a runner's pipelines sit on, the out-of-memory ladder, and the rung
remembered per (model, GPU). Every runner uses this one class.

The presets (engine.devices) mean the same for every family: "fast" keeps everything on the device,
"balanced" slices and tiles the VAE, "low" moves each module onto the GPU only while it runs,
"minimal" streams layer by layer; "low" and "minimal" keep the transformer and T5 in fp8 storage on
CUDA, and a transformer or T5 read from an fp8 file stays in fp8 on every preset (engine.core.precision). A job that runs out of device memory runs again one preset lower;
the rung that worked is remembered (``engine.memory.RungMemory``) so "auto" starts there next time,
also after a restart. Runs on the engine thread.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from engine import devices, memory
from engine.api import OutOfMemory, RuntimeSettings
from engine.core import precision

log = logging.getLogger(__name__)


def place(pipe, settings: RuntimeSettings, vae_tiling: bool = True) -> None:
    """Put ``pipe`` on its device with the memory switches of ``settings`` (hooks and switches of an
    earlier placement are undone first). Pipelines without a VAE (the IF stages) skip the VAE
    switches; ``vae_tiling=False`` keeps diffusers' VAE tiling off (a runner that tiles the image
    itself, such as the x4 upscaler, would only get seams and time from tiles inside its tiles)."""
    if hasattr(pipe, "remove_all_hooks"):
        pipe.remove_all_hooks()
    if settings.sequential_offload and hasattr(pipe, "enable_sequential_cpu_offload"):
        pipe.enable_sequential_cpu_offload(device=settings.device)
    elif settings.model_offload and hasattr(pipe, "enable_model_cpu_offload"):
        pipe.enable_model_cpu_offload(device=settings.device)
    else:
        pipe.to(settings.device)
    if not hasattr(pipe, "enable_attention_slicing"):  # a plain module (a GAN upscaler): nothing more
        return
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    elif getattr(pipe, "_easel_sliced", False):  # only undo it: disabling resets the attention processors
        pipe.disable_attention_slicing()
    pipe._easel_sliced = settings.attention_slicing
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_slicing"):
        (vae.enable_slicing if settings.vae_slicing else vae.disable_slicing)()
        (vae.enable_tiling if settings.vae_tiling and vae_tiling else vae.disable_tiling)()


def unhook(pipe) -> None:
    """Take offload hooks off ``pipe`` (before another pipeline sharing its modules gets them)."""
    if hasattr(pipe, "remove_all_hooks"):
        pipe.remove_all_hooks()


class Placement:
    """Where a runner's pipelines sit and how to step down when they do not fit.

    ``thresholds``: the free-memory thresholds "auto" uses (the family's capability). ``rungs`` and
    ``gpu``: where the rung that worked is remembered (the Engine's), keyed by ``model_path``.
    ``vae_tiling``: whether the presets that tile the VAE may do so for these pipelines.
    """

    def __init__(self, device: str, dtype, thresholds=None, *, model_path: str = "", rungs=None,
                 vae_tiling: bool = True):
        self.device = device
        self.dtype = dtype
        self.thresholds = thresholds
        self.model_path = model_path
        self.rungs = rungs
        self.gpu = memory.gpu_key(device)
        self.vae_tiling = vae_tiling
        self.settings: RuntimeSettings | None = None
        self.requested = ""

    def start_preset(self, requested: str) -> str:
        """``auto`` starts from the free memory, or lower where this model ran out of memory before."""
        preset = devices.resolve_preset(requested, self.device, self.thresholds)
        remembered = self.rungs.get(self.model_path, self.gpu) if (requested == "auto" and self.rungs) else None
        return memory.lowest(preset, remembered) if remembered else preset

    def ensure(self, requested: str, pipes: Sequence) -> RuntimeSettings:
        """Place ``pipes`` for the preset ``requested`` resolves to (nothing done when already there)."""
        if requested != self.requested or self.settings is None:
            self.requested = requested
            self.apply(self.start_preset(requested), pipes)
        return self.settings

    def settings_for(self, preset: str) -> RuntimeSettings:
        settings = devices.runtime_settings(preset, self.device, self.dtype)
        return settings if self.vae_tiling else dataclasses.replace(settings, vae_tiling=False)

    def apply(self, preset: str, pipes: Sequence, force: bool = False) -> None:
        settings = self.settings_for(preset)
        current = dataclasses.replace(self.settings, fp8_storage=()) if self.settings is not None else None
        if force or settings != current:
            stored: set[str] = set()
            by_preset = devices.fp8_by_preset(preset, self.device)
            for pipe in pipes:  # fp8 storage first: the model goes onto the GPU at its stored size
                stored.update(precision.apply(pipe, self.device, self.dtype, by_preset))
                place(pipe, settings, self.vae_tiling)
            self.settings = dataclasses.replace(settings, fp8_storage=tuple(sorted(stored)))

    def place_new(self, pipes: Sequence, requested: str) -> RuntimeSettings:
        """Put freshly loaded ``pipes`` on the device, walking down the ladder while they do not fit
        (the rung that fits is remembered)."""
        import torch

        preset = self.start_preset(requested)
        self.requested = requested
        while True:
            try:
                self.apply(preset, pipes, force=True)
                return self.settings
            except torch.OutOfMemoryError:
                for pipe in pipes:
                    unhook(pipe)
                    pipe.to("cpu")
                devices.empty_cache(self.device)
                lower = memory.lower(preset)
                if lower is None:
                    raise OutOfMemory("the model does not fit in the GPU's memory even with the “minimal” preset; "
                                      "close other programs that use the GPU") from None
                log.warning("%s did not fit with preset %s; trying %s", self.model_path, preset, lower)
                preset = lower
                self._remember(preset)

    def run(self, job: Callable, pipes: Callable[[], Sequence] | Sequence, notices: list[str]):
        """``job()``, run again one preset lower each time the device runs out of memory; the preset
        that worked stays and is remembered. Raises OutOfMemory (one line) when even "minimal" fails,
        with the pipelines back on the preset they started on. ``pipes``: the pipelines to re-place
        (or a function giving them, for runners whose active pipeline can change)."""
        import torch

        first = self.settings.preset
        while True:
            try:
                out = job()
                break
            except torch.OutOfMemoryError:
                current = list(pipes() if callable(pipes) else pipes)
                for pipe in current:
                    if hasattr(pipe, "maybe_free_model_hooks"):
                        pipe.maybe_free_model_hooks()
                devices.empty_cache(self.device)
                lower = memory.lower(self.settings.preset)
                if lower is None:
                    self.apply(first, current)
                    devices.empty_cache(self.device)
                    raise OutOfMemory("the GPU ran out of memory even with the lowest memory preset (“minimal”); "
                                      "try a smaller size or close other programs that use the GPU") from None
                log.warning("out of memory with preset %s; retrying with %s", self.settings.preset, lower)
                self.apply(lower, current)
        if self.settings.preset != first:
            self._remember(self.settings.preset)
            notices.insert(0, f"The GPU ran out of memory with the “{first}” memory preset; Easel finished the job "
                              f"with “{self.settings.preset}” and will use it for this model from now on.")
        return out

    def _remember(self, preset: str) -> None:
        if self.rungs is not None and self.model_path:
            self.rungs.remember(self.model_path, self.gpu, preset)

    def park(self, pipes: Sequence) -> None:
        """Move ``pipes`` to system RAM (a model kept for a quick switch back)."""
        for pipe in pipes:
            unhook(pipe)
            if self.device != "cpu":
                pipe.to("cpu")
        devices.empty_cache(self.device)

    def unpark(self, pipes: Sequence, requested: str) -> None:
        """Back onto the device from system RAM, with the preset ``requested`` resolves to."""
        self.requested = requested
        self.apply(self.start_preset(requested), pipes, force=True)


def free(pipes, device: str) -> None:
    """Drop the pipelines' hooks and give their device memory back (the caller drops its references)."""
    for pipe in pipes:
        unhook(pipe)
    devices.empty_cache(device)

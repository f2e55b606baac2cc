"""One seeded noise field over a whole image, each tile taking its slice (the detail upscale).

Run tile by tile, img2img would draw fresh noise for every tile: the grain changes at each seam and
depends on where the tile grid falls. Here the noise is one field at the full image's latent size,
drawn once from the job's seed on the CPU (so it is the same on every machine), and a tile's pipeline
gets the window of it under the tile: where two tiles overlap they start from the same noise, and a
pixel's noise does not depend on the tile size.

How it reaches the pipeline: every diffusers pipeline (SD, SDXL, SD 3.5, FLUX, Z-Image, Qwen-Image…)
draws its noise through ``diffusers.utils.torch_utils.randn_tensor``, which each diffusers module
imports by name (the img2img ``prepare_latents``, the VAE's posterior sample, an ancestral sampler's
step). Not every img2img pipeline takes a ``latents=`` argument (SD's and SDXL's do not add noise to
given latents), so while ``drawn_from(job)`` is entered, those module-level names answer the engine
thread's draws of the tile's latent size with the field's window: the k-th such draw of a tile gets the
k-th field (the VAE sample, then the starting noise, then each ancestral step's noise). Other draws,
and every other thread, get diffusers' own function. Written once here; the runners enter it around
their pipeline call. Engine thread.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.api import batch_seed

_LATENT_SCALES = (1, 2, 4, 8, 16)  # px per latent pixel a VAE may have (the tiny test VAEs: 2; real ones: 8)
_local = threading.local()
_installed: dict[str, object] = {}  # module name -> diffusers' randn_tensor it held
_lock = threading.Lock()


@dataclass
class NoiseField:
    """The noise of a ``width`` x ``height`` px image, from ``seed``: field ``k`` (the k-th draw of a tile)
    is a standard normal tensor at the full latent size, generated on the CPU when first asked and kept
    for the other tiles of the job."""

    seed: int
    width: int
    height: int
    _fields: dict = field(default_factory=dict, repr=False)

    def full(self, k: int, channels: int, scale: int):
        """Field ``k`` for latents of ``channels`` channels at ``scale`` px per latent pixel (float32, CPU)."""
        import torch

        key = (k, channels, scale)
        if key not in self._fields:
            generator = torch.Generator("cpu").manual_seed(batch_seed(self.seed, k))
            self._fields[key] = torch.randn((channels, -(-self.height // scale), -(-self.width // scale)),
                                            generator=generator, dtype=torch.float32)
        return self._fields[key]

    def window(self, x: int, y: int, width: int, height: int) -> NoiseWindow:
        """The slice a tile at (``x``, ``y``) px of ``width`` x ``height`` px draws from."""
        return NoiseWindow(self, x, y, width, height)


@dataclass
class NoiseWindow:
    """One tile's view of a NoiseField (px); counts the tile's draws."""

    field: NoiseField
    x: int
    y: int
    width: int
    height: int
    draws: int = 0

    def scale_of(self, shape) -> int | None:
        """The px per latent pixel of a draw of ``shape`` when it is this tile's latent (batch of one,
        spatial size the tile's at one VAE scale, aligned with the field), else None."""
        if len(shape) not in (4, 5) or shape[0] != 1:
            return None
        h, w = int(shape[-2]), int(shape[-1])
        for scale in _LATENT_SCALES:
            if (w * scale, h * scale) == (self.width, self.height) and self.x % scale == 0 and self.y % scale == 0:
                return scale
        return None

    def take(self, shape, scale: int):
        """The next draw: field ``draws``' window under the tile, shaped as ``shape``."""
        channels = 1
        for n in shape[1:-2]:
            channels *= int(n)
        full = self.field.full(self.draws, channels, scale)
        self.draws += 1
        x, y, h, w = self.x // scale, self.y // scale, int(shape[-2]), int(shape[-1])
        return full[:, y:y + h, x:x + w].reshape(tuple(int(n) for n in shape))


def _answer(original):
    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        window = getattr(_local, "window", None)
        scale = window.scale_of(shape) if window is not None else None
        if scale is None:
            return original(shape, generator=generator, device=device, dtype=dtype, layout=layout)
        import torch

        return window.take(shape, scale).to(device=device or torch.device("cpu"), dtype=dtype)

    randn_tensor.__wrapped__ = original
    return randn_tensor


def _install() -> None:
    """Point every loaded diffusers module's ``randn_tensor`` at the answering one (once per module)."""
    from diffusers.utils import torch_utils

    original = torch_utils.randn_tensor
    # (torch_utils' own name is answered too after the first call: a module imported since still holds
    # diffusers' function, which the unwrapped one is)
    original = getattr(original, "__wrapped__", original)
    answer = None
    with _lock:
        for name, module in list(sys.modules.items()):
            if name in _installed or not name.startswith("diffusers.") or module is None:
                continue
            if getattr(module, "randn_tensor", None) is original:
                answer = answer or _answer(original)
                _installed[name] = original
                module.randn_tensor = answer


@contextlib.contextmanager
def drawn_from(job) -> Iterator[None]:
    """While inside, this thread's diffusers noise draws of the tile's latent size come from
    ``job.noise`` (a NoiseWindow; nothing changes when it is None). Engine thread."""
    window = getattr(job, "noise", None)
    if window is None:
        yield
        return
    _install()
    window.draws = 0  # a retry after out of memory draws the same noise again
    _local.window = window
    try:
        yield
    finally:
        _local.window = None

"""Enlarging an image on the way to a refining pass (the hires fix, the detail upscale), written once:
a plain Lanczos resize, or a GAN upscaler from the model library (engine.upscale, tiled), applied as
often as the factor needs and resized to the exact size. The last GAN used stays loaded for the next job.
The hires fix also has A1111's "Latent" upscalers: the first pass's latents themselves are enlarged
(``enlarge_latents``) and the second pass denoises from them, with no decode and encode between.
Everything here runs on the engine thread.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from engine.api import LATENT_UPSCALERS, PLAIN_UPSCALER, InvalidRequest, latent_name
from engine.core.job import Job

GAN_TILE, GAN_OVERLAP = 512, 32

def is_plain(name: str) -> bool:
    return name.strip().lower() == PLAIN_UPSCALER.lower()


def is_latent(name: str) -> bool:
    """Whether ``name`` asks for a latent upscaler (A1111's "Latent…"), known or not."""
    return name.strip().lower().startswith("latent")


def display_name(name: str) -> str:
    """What the metadata records for ``name``: "Lanczos", a latent upscaler's A1111 name, or the GAN's file
    stem (never the user's folders)."""
    if is_plain(name):
        return PLAIN_UPSCALER
    if latent_name(name):
        return latent_name(name)
    return Path(name).stem if Path(name).suffix else Path(name).name


def enlarge_latents(latents, size: tuple[int, int], name: str):
    """``latents`` (N x C x h x w) enlarged to ``size`` (width, height in latent px) with the latent upscaler
    ``name``, as A1111 does (``torch.nn.functional.interpolate``, computed in float32). Engine thread."""
    import torch

    mode, antialias = LATENT_UPSCALERS[latent_name(name)]
    kwargs = {"antialias": antialias} if mode in ("bilinear", "bicubic") else {}
    out = torch.nn.functional.interpolate(latents.float(), size=(size[1], size[0]), mode=mode, **kwargs)
    return out.to(latents.dtype)


class Upscalers:
    """Resolves upscaler names (a file, or a name in the model library) and keeps the last GAN loaded."""

    def __init__(self, device: str, library=None):
        self.device = device
        self.library = library
        self._loaded: tuple[str, object] | None = None  # (path, engine.upscale.Upscaler)

    def resolve(self, name: str) -> str:
        """The file of the GAN upscaler ``name`` ("" for the plain resize); InvalidRequest (one line) when
        there is none by that name."""
        if is_plain(name):
            return ""
        if is_latent(name):
            if not latent_name(name):
                raise InvalidRequest("upscaler", f"no latent upscaler called {name}: the latent ones are "
                                     + ", ".join(LATENT_UPSCALERS))
            raise InvalidRequest("upscaler", f"{latent_name(name)} enlarges the hires fix's first pass only: to "
                                 f"enlarge a picture use {PLAIN_UPSCALER} or a GAN upscaler from the model folders")
        path = Path(name).expanduser()
        if path.is_file():
            return str(path.resolve())
        entry = self.library.find("upscaler", name) if self.library is not None else None
        if entry is None and self.library is not None and path.suffix:
            entry = self.library.find("upscaler", path.stem)
        if entry is None:
            raise InvalidRequest("upscaler", f"no upscaler called {name} in the model folders (give its file, "
                                 f"or {PLAIN_UPSCALER} for a plain resize)")
        return entry.path

    def enlarge(self, image, size: tuple[int, int], name: str, job: Job | None = None):
        """``image`` (PIL) enlarged to ``size`` with the upscaler ``name``; progress per GAN tile and cancel
        (between tiles and inside one) through ``job``. Engine thread."""
        from PIL import Image

        path = self.resolve(name)
        image = image.convert("RGB")
        if path:
            from engine.core.steps import cancel_within_steps
            from engine.upscale import upscale_image

            upscaler = self._load(path)
            while image.width < size[0] or image.height < size[1]:  # a x2 model asked for x4 runs twice
                report = (lambda done, total: job.report(done, total)) if job is not None else None
                inside = (cancel_within_steps([getattr(upscaler.model, "model", upscaler.model)], job)
                          if job is not None else contextlib.nullcontext())
                with inside:
                    image = upscale_image(upscaler, image, tile=GAN_TILE, overlap=GAN_OVERLAP, report=report).image
        if image.size != tuple(size):
            image = image.resize(tuple(size), Image.Resampling.LANCZOS)
        return image

    def _load(self, path: str):
        if self._loaded is not None and self._loaded[0] == path:
            return self._loaded[1]
        from engine.upscale import load_upscaler

        self.close()
        upscaler = load_upscaler(path, device=self.device)
        self._loaded = (path, upscaler)
        return upscaler

    def close(self) -> None:
        """Free the GAN kept loaded."""
        self._loaded = None

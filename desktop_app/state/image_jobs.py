"""Jobs made from an existing image: Variations (img2img with new seeds, or Stable unCLIP's image
embedding) and Upscale (a GAN upscaler on the engine thread, or a diffusion x4 upscaler as an
ordinary generation). Each is ONE queued job, so progress, preview, cancel, the queue and the
gallery's save-with-metadata work as for any generation.

The image comes from the gallery (a library image, one shown from elsewhere, one kept in memory after
a failed save) or from the canvas. Files are read on the bridge's I/O thread. GUI thread.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from desktop_app.bridge import EngineBridge, Outcome, UpscaleOutcome, UpscaleSpec, pil_to_qimage
from desktop_app.state.canvas import CanvasDocument
from desktop_app.state.errors import ErrorReporter
from desktop_app.state.gallery import GalleryState, OpenedImage
from desktop_app.state.gallery_model import UnsavedImage
from desktop_app.state.jobs import Job, JobQueue
from desktop_app.state.models import ModelCatalog
from desktop_app.state.params import GenerationParameters
from engine import families
from engine.api import EaselError, ModelInfo
from engine.library import LibraryEntry

log = logging.getLogger(__name__)

TILE_CHOICES = (("Auto", 512), ("256 px", 256), ("512 px", 512), ("1024 px", 1024), ("One pass (most memory)", 0))
MAX_VARIATIONS = 8


@dataclass(frozen=True)
class ImageSource:
    """An image to make variations of or to upscale: ``item`` is a gallery item, or None for the canvas."""

    item: Any
    name: str
    width: int
    height: int
    prompt: str = ""
    model_name: str = ""
    steps: int | None = None  # the steps it was made with (None: not known)
    steps_from: str = ""  # where ``steps`` comes from, for the dialog ("the image's", "the prompt panel's")


@dataclass(frozen=True)
class LoadedSource:
    image: Any = field(repr=False)  # PIL image, RGB or RGBA
    texts: dict[str, str] = field(default_factory=dict, repr=False)
    meta: Any = None  # engine.metadata.ImageMetadata, or None (the canvas, an unsaved image)


@dataclass(frozen=True)
class UpscaleOrigin:
    """A job's link back to the image it enlarges (for the before/after view)."""

    before: QImage
    source_name: str


@dataclass(frozen=True)
class UpscaleShown:
    """What the before/after view shows once an upscale is done."""

    before: QImage
    after: QImage
    path: Path
    entry: Any  # LibraryEntry (None when it could not be saved)
    caption: str


class ImageJobs(QObject):
    upscaled = Signal(object)  # UpscaleShown
    queued = Signal(object)  # Job

    def __init__(self, *, queue: JobQueue, catalog: ModelCatalog, gallery: GalleryState, document: CanvasDocument,
                 params: GenerationParameters, bridge: EngineBridge, reporter: ErrorReporter,
                 spawn: Callable[[Any], asyncio.Task[Any]], parent: QObject | None = None):
        super().__init__(parent)
        self.queue, self.catalog, self.gallery, self.doc = queue, catalog, gallery, document
        self.params, self.bridge, self.reporter = params, bridge, reporter
        self._spawn = spawn
        queue.job_upscaled.connect(self._on_queue_job_upscaled)
        queue.job_finished.connect(self._on_queue_job_finished)

    # -- sources ------------------------------------------------------------------------------

    def source_for(self, item: Any) -> ImageSource | None:
        """The source for a gallery item (None when there is nothing to read)."""
        if isinstance(item, LibraryEntry):
            return ImageSource(item, item.name, item.width, item.height, item.prompt, item.model_name,
                               item.steps, "the image's" if item.steps else "")
        if isinstance(item, OpenedImage):
            f = item.meta.fields if item.meta is not None else {}
            size = _file_size(item.path)
            model_name = (item.meta.model_name or "") if item.meta is not None else ""
            return ImageSource(item, item.path.name, size[0], size[1], f.get("prompt", ""), model_name,
                               f.get("steps"), "the image's" if f.get("steps") else "")
        if isinstance(item, UnsavedImage):
            r = item.result
            return ImageSource(item, f"unsaved image (seed {item.seed})", item.image.width(), item.image.height(),
                               r.request.prompt, r.model.name, r.request.steps, "the image's")
        return None

    def canvas_source(self) -> ImageSource | None:
        if not self.doc.has_image:
            return None
        return ImageSource(None, f"the canvas ({self.doc.source or 'image'})", self.doc.width, self.doc.height,
                           self.params.prompt, "", self.params.steps, "the prompt panel's")

    async def load(self, source: ImageSource) -> LoadedSource:
        """The source's pixels and stored settings (files are read on the I/O thread)."""
        item = source.item
        if item is None:
            return LoadedSource(self.doc.image_pil(), {}, None)
        if isinstance(item, UnsavedImage):
            from desktop_app.state.canvas_actions import qimage_to_pil

            return LoadedSource(qimage_to_pil(item.image).convert("RGB"), {}, None)
        path = self.gallery.absolute(item) if isinstance(item, LibraryEntry) else item.path
        return await self.bridge.run_io(_read_source, path)

    # -- models -------------------------------------------------------------------------------

    def generators(self) -> list[ModelInfo]:
        return self.catalog.usable

    def default_model(self, source: ImageSource) -> str:
        """The image's own model when it is in the library, else the current one."""
        if source.model_name:
            for m in self.catalog.usable:
                if m.name == source.model_name or Path(m.path).stem == source.model_name:
                    return m.path
        return self.params.model

    def upscalers(self) -> list[ModelInfo]:
        """The library's upscalers (GAN files and diffusion x4 folders) that can be used."""
        return [e.info for e in self.catalog.of_kind("upscaler") if e.usable]

    def catalog_upscaler(self, path: str) -> ModelInfo | None:
        return next((u for u in self.upscalers() if u.path == path), None)

    def gan_upscalers(self) -> list[ModelInfo]:
        """The library's GAN upscalers (what enlarges an image before a detail pass or a hires fix's second pass)."""
        out = []
        for u in self.upscalers():
            caps = families.capabilities(u)
            if caps is None or caps.upscale_kind != "diffusion":
                out.append(u)
        return out

    def detail_models(self) -> list[ModelInfo]:
        """The generators that can redraw detail (their family runs image to image)."""
        return [m for m in self.catalog.usable if _refines(m)]

    # -- variations ---------------------------------------------------------------------------

    def make_variations(self, source: ImageSource, model: str, count: int, strength: float,
                        prompt: str | None = None) -> asyncio.Task[Job | None]:
        """Queue one job making ``count`` variations of the image (``prompt`` None: the stored one)."""
        return self._spawn(self._variations(source, model, count, strength, prompt))

    async def _variations(self, source: ImageSource, model: str, count: int, strength: float,
                          prompt: str | None) -> Job | None:
        from engine.variations import variation_request

        info = self.catalog.find(model)
        if info is None or not info.usable:
            self.reporter.report(f"Variations need a model to draw with: {Path(model).name or 'none'} is not in "
                                 "the model library.")
            return None
        try:
            loaded = await self.load(source)
            if prompt is None and loaded.meta is None:  # nothing stored (the canvas, an unsaved image)
                prompt = source.prompt
            request = variation_request(loaded.image.convert("RGB"), model, info, loaded.meta,
                                        count=max(1, min(MAX_VARIATIONS, count)), strength=strength,
                                        prompt=prompt, steps=source.steps)
            request = request.replace(memory_preset=self.params.memory_preset)
        except EaselError as exc:
            self.reporter.report(f"Cannot make variations of {source.name}: {exc}")
            return None
        job = self.queue.enqueue(request, label=f"Variations of {source.name}")
        self.queued.emit(job)
        return job

    # -- upscale ------------------------------------------------------------------------------

    def upscale(self, source: ImageSource, model: str, scale: int, tile: int = 512) -> asyncio.Task[Job | None]:
        """Queue one upscale job: a GAN file runs on the engine thread tile by tile (``tile`` px, 0 = one
        pass); a diffusion x4 folder runs as a generation. The result goes into the gallery."""
        return self._spawn(self._upscale(source, model, scale, tile))

    async def _upscale(self, source: ImageSource, model: str, scale: int, tile: int) -> Job | None:
        info = self.catalog_upscaler(model)
        if info is None:
            self.reporter.report(f"{Path(model).name or 'No upscaler'} is not an upscaler in the model library: "
                                 "put upscaler files in a model folder and rescan (F5).")
            return None
        try:
            loaded = await self.load(source)
        except EaselError as exc:
            self.reporter.report(f"Cannot upscale {source.name}: {exc}")
            return None
        before = pil_to_qimage(loaded.image)
        origin = UpscaleOrigin(before, source.name)
        caps = families.capabilities(info)
        if caps is not None and caps.upscale_kind == "diffusion":
            return self._diffusion_upscale(source, loaded, info, scale, origin)
        spec = UpscaleSpec(loaded.image, info.path, scale, tile, source.name, info.name, dict(loaded.texts))
        job = self.queue.enqueue_upscale(spec, origin)
        self.queued.emit(job)
        return job

    def detail_upscale(self, source: ImageSource, model: str, upscaler: str, scale: int, strength: float,
                       tile: int) -> asyncio.Task[Job | None]:
        """Queue one detail upscale: enlarge ``scale`` times with ``upscaler`` (a GAN file, or "Lanczos"), then
        img2img over ``tile`` px tiles with the generator ``model`` and the image's prompt (engine.core.detail).
        The result goes into the gallery with metadata saying what was done."""
        return self._spawn(self._detail_upscale(source, model, upscaler, scale, strength, tile))

    async def _detail_upscale(self, source: ImageSource, model: str, upscaler: str, scale: int, strength: float,
                              tile: int) -> Job | None:
        from engine.detail_upscale import detail_request

        info = self.catalog.find(model)
        if info is None or not _refines(info):
            self.reporter.report(f"Upscale with detail needs a model that runs image to image: {Path(model).name or 'none'} "
                                 "is not one in the model library.")
            return None
        try:
            loaded = await self.load(source)
            prompt = source.prompt if loaded.meta is None else None  # the canvas: the prompt panel's
            request = detail_request(loaded.image.convert("RGB"), model, info, loaded.meta, scale=scale,
                                     strength=strength, tile=tile, upscaler=upscaler, prompt=prompt, steps=source.steps,
                                     memory_preset=self.params.memory_preset)
        except EaselError as exc:
            self.reporter.report(f"Cannot upscale {source.name}: {exc}")
            return None
        origin = UpscaleOrigin(pil_to_qimage(loaded.image), source.name)
        job = self.queue.enqueue(request, origin, label=f"Upscale x{scale} with detail · {source.name}")
        self.queued.emit(job)
        return job

    def _diffusion_upscale(self, source: ImageSource, loaded: LoadedSource, info: ModelInfo, scale: int,
                           origin: UpscaleOrigin) -> Job | None:
        if scale != 4:
            self.reporter.report(f"{info.name} enlarges 4 times only: choose x4, or a GAN upscaler for x2.")
            return None
        try:
            request = families.upscale_request(loaded.image.convert("RGB"), info.path, info, loaded.meta)
            request = request.replace(memory_preset=self.params.memory_preset)
        except EaselError as exc:
            self.reporter.report(f"Cannot upscale {source.name}: {exc}")
            return None
        job = self.queue.enqueue(request, origin, label=f"Upscale x4 · {source.name}")
        self.queued.emit(job)
        return job

    def _on_queue_job_upscaled(self, job: Job, outcome: UpscaleOutcome) -> None:
        self.gallery.on_upscaled(outcome.saved, outcome.image)
        r = outcome.result
        caption = (f"{r.source_size[0]}×{r.source_size[1]} → {outcome.image.width()}×{outcome.image.height()} "
                   f"with {r.model_name} in {outcome.seconds:.1f} s")
        self.upscaled.emit(UpscaleShown(outcome.before, outcome.image, outcome.path, outcome.saved.entry, caption))

    def _on_queue_job_finished(self, job: Job, outcome: Outcome) -> None:
        if not isinstance(job.origin, UpscaleOrigin) or not outcome.images:
            return
        after = outcome.images[0]
        entry = getattr(outcome.saved[0], "entry", None) if outcome.saved else None
        path = outcome.paths[0] if outcome.paths else Path()
        before = job.origin.before
        caption = (f"{before.width()}×{before.height()} → {after.width()}×{after.height()} with "
                   f"{outcome.result.model.name} in {outcome.seconds:.1f} s")
        self.upscaled.emit(UpscaleShown(before, after, path, entry, caption))


def _refines(info: ModelInfo) -> bool:
    """Whether the generator ``info`` runs image to image (the detail upscale's and the hires fix's second pass)."""
    from desktop_app.state.families import hires_blocked

    return families.capabilities(info) is not None and not hires_blocked(info)


def _read_source(path: Path) -> LoadedSource:
    """I/O thread: decode the image (EXIF orientation, 16-bit, CMYK handled) and read its settings."""
    from engine.images import open_image
    from engine.metadata import read_metadata

    image = open_image(str(path), "image")
    meta = read_metadata(path)
    return LoadedSource(image, dict(meta.raw), meta if meta.found else None)


def _file_size(path: Path) -> tuple[int, int]:
    from engine.images import open_header

    try:
        with open_header(path) as im:
            return im.size
    except EaselError:
        return (0, 0)

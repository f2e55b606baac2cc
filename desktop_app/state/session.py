"""The work in progress that outlives a quit: the queue's jobs and the canvas.

At quit ``save`` writes them into <data>/session/ (the jobs' images as PNGs, the canvas with all its
layers, their properties and the mask as an OpenRaster file (canvas_ora), then ``session.json`` written
atomically last, so a quit cut short leaves the previous session or none, never half of one); at the
next start ``restore`` puts the canvas back and queues the jobs again. GUI thread: a canvas is at
most a few tens of MB, written once at quit.

Kept: generation jobs (txt2img, and img2img/inpaint with their source image and mask, a canvas
job's link back to the canvas too). Not kept: GAN upscale jobs (their source image is in the
gallery; the quit question says so).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_app.state.canvas import CanvasDocument
from desktop_app.state.canvas_actions import CanvasJob
from desktop_app.state.jobs import JobQueue
from desktop_app.state.params import GenerationParameters
from engine.api import GenerationRequest, InvalidRequest
from engine.lazy import LazyModule
from engine.outputs import write_png_atomic, write_text_atomic

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")

canvas_ora = LazyModule("desktop_app.state.canvas_ora")  # a saved session is read after the window is shown

log = logging.getLogger(__name__)

SCHEMA = 1


@dataclass(frozen=True)
class WorkInProgress:
    """What a quit now would stop or leave: for the question the window asks."""

    jobs: int  # generation jobs, running or waiting (kept for the next start)
    upscales: int  # upscale jobs (not kept)
    canvas_edited: bool  # the canvas has changes not in any file

    @property
    def any(self) -> bool:
        return bool(self.jobs or self.upscales or self.canvas_edited)

    def describe(self) -> str:
        parts = []
        if self.jobs:
            parts.append(f"{self.jobs} job{'s' if self.jobs > 1 else ''} in the queue")
        if self.canvas_edited:
            parts.append("a canvas with changes that are not saved in any file")
        text = " and ".join(parts)
        if self.upscales:
            text += ("; " if text else "") + (f"{self.upscales} upscale job{'s' if self.upscales > 1 else ''} "
                                              "(not kept: start it again from the gallery)")
        return text


class SessionStore:
    """Saves and restores the queue and the canvas in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def file(self) -> Path:
        return self.folder / "session.json"

    # -- what would be lost -------------------------------------------------------------------

    @staticmethod
    def work_in_progress(queue: JobQueue, doc: CanvasDocument) -> WorkInProgress:
        jobs = queue.jobs()
        # Clean: just opened from a file (CanvasActions marks it); a paste or any edit is not in a file.
        edited = doc.has_image and not doc.undo_stack.isClean()
        return WorkInProgress(sum(j.request is not None for j in jobs), sum(j.upscale is not None for j in jobs), edited)

    # -- save (at quit) -----------------------------------------------------------------------

    def save(self, queue: JobQueue, doc: CanvasDocument, params: GenerationParameters) -> None:
        """Write the jobs (the running one first) and the canvas. Raises OSError on a full disk."""
        self.folder.mkdir(parents=True, exist_ok=True)
        previous = self._referenced()
        n = _next_number(self.folder)
        written: list[str] = []

        def png(image: Image.Image, stem: str) -> str:
            nonlocal n
            name = f"{stem}-{n}.png"
            n += 1
            write_png_atomic(self.folder / name, image)
            written.append(name)
            return name

        jobs = []
        for job in queue.jobs():
            if job.request is None:
                continue
            r = job.request
            entry: dict[str, Any] = {"request": r.to_dict(), "label": job.label}
            if r.init_image is not None:
                entry["init_image"] = png(r.init_image, "job-init")
            if r.mask is not None:
                entry["mask"] = png(r.mask, "job-mask")
            if isinstance(job.origin, CanvasJob):
                entry["canvas_box"] = list(job.origin.box)
            jobs.append(entry)
        canvas = None
        if doc.has_image:  # every layer, its properties and the mask, as an OpenRaster file
            name = f"canvas-{n}.ora"
            n += 1
            canvas_ora.write(self.folder / name, canvas_ora.snapshot(doc))
            written.append(name)
            canvas = {"document": name, "source": doc.source, "edit_mode": params.edit_mode}
        write_text_atomic(self.file, json.dumps({"schema": SCHEMA, "jobs": jobs, "canvas": canvas}, indent=1))
        for name in previous - set(written):
            (self.folder / name).unlink(missing_ok=True)

    def discard(self) -> None:
        """Forget the saved session (the user chose to drop it)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- restore (at start) -------------------------------------------------------------------

    def restore(self, queue: JobQueue, doc: CanvasDocument, params: GenerationParameters) -> tuple[int, bool, list[str]]:
        """Put the saved canvas back and queue the saved jobs: (jobs queued, canvas restored, problems).

        A damaged session loses only the part that cannot be read; the session is then forgotten,
        so it is restored once."""
        problems: list[str] = []
        if not self.file.is_file():
            return 0, False, problems
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as exc:
            log.warning("the saved session %s is unreadable: %s", self.file, exc)
            self.discard()
            return 0, False, [f"the saved queue and canvas could not be read ({exc})"]
        restored_canvas = False
        canvas = data.get("canvas")
        if isinstance(canvas, dict):
            try:
                source = str(canvas.get("source", "the last session"))
                if canvas.get("document"):
                    layers, mask, active = canvas_ora.to_layers(
                        canvas_ora.read(self.folder / Path(str(canvas["document"])).name))
                    doc.set_document(layers, mask, source, f"Open {source}", active)
                else:  # a session saved before the canvas had layers
                    image = self._image(canvas["image"], "RGB")
                    mask = self._image(canvas["mask"], "L") if canvas.get("mask") else None
                    doc.set_image(image, source, mask)
                mode = canvas.get("edit_mode")
                if mode in ("img2img", "inpaint", "instruct"):
                    params.edit_mode = mode
                restored_canvas = True
            except (OSError, KeyError, ValueError, TypeError) as exc:
                problems.append(f"the canvas could not be read back ({exc})")
        queued = 0
        for entry in data.get("jobs") or []:
            try:
                extra = {}
                if entry.get("init_image"):
                    extra["init_image"] = self._image(entry["init_image"], "RGB")
                if entry.get("mask"):
                    extra["mask"] = self._image(entry["mask"], "L")
                request = GenerationRequest.from_dict(entry["request"], **extra)
                origin = None
                box = entry.get("canvas_box")
                if box is not None and restored_canvas and request.init_image is not None \
                        and request.init_image.size == (doc.width, doc.height):
                    origin = CanvasJob(doc.image_array.copy(), tuple(int(v) for v in box))
                queue.enqueue(request, origin, label=str(entry.get("label") or ""))
                queued += 1
            except (OSError, KeyError, ValueError, TypeError, InvalidRequest) as exc:
                problems.append(f"a job could not be read back ({exc})")
        self.discard()
        return queued, restored_canvas, problems

    def _image(self, name: str, mode: str) -> Image.Image:
        path = self.folder / Path(str(name)).name  # only files of this folder
        with Image.open(path) as im:
            im.load()
            return im.convert(mode)

    def _referenced(self) -> set[str]:
        return {p.name for p in self.folder.glob("*.png")} | {p.name for p in self.folder.glob("*.ora")}


def _next_number(folder: Path) -> int:
    files = [*folder.glob("*.png"), *folder.glob("*.ora")]
    numbers = [int(p.stem.rsplit("-", 1)[-1]) for p in files if p.stem.rsplit("-", 1)[-1].isdigit()]
    return max(numbers, default=0) + 1



"""What the canvas widgets call: open, paste, edit a result, extend, generate from the canvas,
accept or discard candidates. GUI thread; file decoding runs on the bridge's I/O thread."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from desktop_app.bridge import EngineBridge, Outcome
from desktop_app.state.canvas import Candidate, CanvasDocument
from desktop_app.state.errors import ErrorReporter
from desktop_app.state.live import LiveMode
from desktop_app.state.params import EDIT_MODES, GenerationParameters
from desktop_app.state.status import EngineStatus
from engine.api import (MAX_SIZE, ControlInput, EaselError, GenerationRequest, InvalidRequest, Mode, ReferenceInput,
                        RegionInput)
from engine.images import check_size, normalize, open_image, split_alpha
from engine.outputs import write_png_atomic
from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")
imageprep = LazyModule("engine.imageprep")  # first used by a canvas job

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path
# The layered files (autosave, .ora, .psd) are first read or written after the window is shown.
canvas_ora = LazyModule("desktop_app.state.canvas_ora")
canvas_psd = LazyModule("desktop_app.state.canvas_psd")

log = logging.getLogger(__name__)
AUTOSAVE_DELAY_MS = 3000


@dataclass(frozen=True)
class CanvasJob:
    """A job's link back to the canvas: the image it started from and where its preview goes."""

    source: np.ndarray = None  # type: ignore[assignment]
    box: tuple[int, int, int, int] = (0, 0, 0, 0)


def qimage_to_pil(image: QImage) -> Image.Image:
    """RGBA (kept when it has transparency, for "transparency as mask") or RGB. GUI thread."""
    check_size((image.width(), image.height()), "pasted image")
    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h = rgba.width(), rgba.height()
    raw = np.frombuffer(rgba.constBits(), np.uint8, count=rgba.bytesPerLine() * h)
    arr = raw.reshape(h, rgba.bytesPerLine())[:, : w * 4].reshape(h, w, 4).copy()
    return normalize(Image.fromarray(arr, "RGBA"))


class CanvasActions(QObject):
    opened = Signal(str)  # the source shown on the new canvas
    accepted = Signal(object)  # Candidate
    discarded = Signal(list)  # the saved files (paths) of the candidates the user discarded
    blocked_changed = Signal()  # whether Generate can edit the canvas may have changed
    modes_changed = Signal()  # the editing modes offered changed (Edit with words comes and goes with the model)

    def __init__(
        self,
        doc: CanvasDocument,
        params: GenerationParameters,
        bridge: EngineBridge,
        reporter: ErrorReporter,
        status: EngineStatus,
        spawn: Callable[[Any], asyncio.Task[Any]],
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.doc, self.params, self.bridge, self.reporter, self.status = doc, params, bridge, reporter, status
        self._spawn = spawn
        self.alpha_as_mask = True  # transparent pixels of an opened image become the mask
        self.words_offered = False  # "Edit with words": the chosen model edits by instruction
        self.library: Any = None  # the model library (engine.models.ModelLibrary): where a depth model is found
        # Autosave: a few seconds after the last edit the canvas is written (on the I/O thread,
        # atomically) to ``autosave_path`` when one is set, so a crash loses at most those seconds.
        self.autosave_path: Path | None = None
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self.autosave)
        self._autosaving = self._autosave_again = False
        self._autosave_pngs: dict[tuple[str, int], bytes] = {}  # unchanged layers are not encoded again
        doc.undo_stack.indexChanged.connect(self._schedule_autosave)
        doc.undo_stack.indexChanged.connect(self._on_state_changed)
        doc.document_replaced.connect(self._on_state_changed)
        params.edit_mode_changed.connect(self._on_state_changed)
        params.only_masked_changed.connect(self._on_state_changed)
        params.prompt_changed.connect(self._on_prompt_changed)
        # Why the model a request names takes no regions ("" when it does); the window's actions set it.
        self.regions_refusal: Callable[[str], str] = lambda _model: ""
        # Live mode of this canvas: off until its toggle; its runs reuse the bridge, not the queue.
        self.live = LiveMode(self, params, bridge, reporter, status, spawn, parent=self)

    def _on_state_changed(self, *_args: Any) -> None:
        self.blocked_changed.emit()

    def _on_prompt_changed(self, _text: str) -> None:
        if self.params.edit_mode == "instruct":  # an edit with words needs its words
            self.blocked_changed.emit()

    def offered_modes(self) -> tuple[str, ...]:
        """The modes Generate offers (params.EDIT_MODES; "instruct" only for an instruction-edit model)."""
        return tuple(m for m in EDIT_MODES if m != "instruct" or self.words_offered)

    def set_words_offered(self, offered: bool, why_not: str = "") -> None:
        """Whether the chosen model edits by instruction. When it does not and Generate was set to Edit
        with words, Generate goes back to inpaint (a mask is painted) or image to image, and the status
        says why (``why_not``: the line naming the models that do)."""
        if offered != self.words_offered:
            self.words_offered = offered
            self.modes_changed.emit()
        if not offered and self.params.edit_mode == "instruct":
            self.params.edit_mode = "inpaint" if self.doc.has_mask() else "img2img"
            back = "Inpaint" if self.params.edit_mode == "inpaint" else "Image to image"
            self.status.set_activity(f"Edit with words needs an instruction-edit model ({why_not}); "
                                     f"Generate is back to {back}.")

    # -- autosave -----------------------------------------------------------------------------

    def _schedule_autosave(self, *_args: Any) -> None:
        if self.autosave_path is not None and self.doc.has_image:
            self._autosave_timer.start()

    def stop_autosave(self) -> Path | None:
        """No more autosaves (at quit); returns where they went."""
        path, self.autosave_path = self.autosave_path, None
        self._autosave_timer.stop()
        self._autosave_again = False
        return path

    def autosave(self) -> asyncio.Task[bool] | None:
        """Write the canvas to ``autosave_path`` now (a copy of the pixels here, the encoding and the
        atomic write on the I/O thread). One at a time: an edit during a save saves again after it."""
        if self.autosave_path is None or not self.doc.has_image:
            return None
        if self._autosaving:
            self._autosave_again = True
            return None
        self._autosaving = True
        data = canvas_ora.snapshot(self.doc, raw=True, png_cache=self._autosave_pngs)
        return self._spawn(self._autosave(self.autosave_path, data))

    async def _autosave(self, path: Path, data: canvas_ora.OraDocument) -> bool:
        try:
            await self.bridge.run_io(canvas_ora.write, path, data)
            return True
        except (OSError, EaselError) as exc:
            log.warning("autosaving the canvas to %s failed: %s", path, exc)
            return False
        finally:
            self._autosaving = False
            if self._autosave_again:
                self._autosave_again = False
                self._autosave_timer.start()

    def restore_autosave(self) -> str:
        """At start, when the last run ended without saving its session (a crash): the autosaved
        canvas comes back. Returns "" or what went wrong (one line). GUI thread, once."""
        path = self.autosave_path
        if path is None or not path.is_file() or self.doc.has_image:
            return ""
        try:
            self.load_layers(canvas_ora.read(path), "the autosaved canvas")
        except (EaselError, ValueError, MemoryError) as exc:
            return f"the autosaved canvas could not be read back ({exc})"
        return "restored"

    # -- sources ------------------------------------------------------------------------------

    def open_file(self, path: str | Path, mode: str | None = None) -> asyncio.Task[None]:
        """Decode on the I/O thread, then make it the canvas. A bad file: one line, canvas untouched."""
        return self._spawn(self._open_file(Path(path), mode))

    async def _open_file(self, path: Path, mode: str | None = None) -> None:
        self.status.set_activity(f"Opening {path.name}…")
        layered = path.suffix.lower() == ".ora"
        try:
            image = await self.bridge.run_io(canvas_ora.read if layered else open_image, str(path),
                                             *(() if layered else ("image",)))
            if layered:
                self.load_layers(image, path.name, mode)
        except EaselError as exc:
            self.reporter.report(f"Cannot open {path.name}: {_reason(exc, path.name)}")
            return
        finally:
            self.status.set_activity("")
        if not layered:
            self.load(image, path.name, mode)
        self.doc.undo_stack.setClean()  # what the canvas holds is in that file: nothing to lose yet

    def load_layers(self, data: canvas_ora.OraDocument, source: str, mode: str | None = None) -> None:
        """A decoded .ora becomes the canvas, layers, properties and mask. GUI thread."""
        layers, mask, active = canvas_ora.to_layers(data)
        self.doc.set_document(layers, mask, source, f"Open {source}", active)
        if mode is not None:
            self.params.edit_mode = mode
        elif self.params.edit_mode == "txt2img":
            self.params.edit_mode = "inpaint"
        self.opened.emit(source)

    # -- export -------------------------------------------------------------------------------

    def export(self, path: str | Path) -> asyncio.Task[bool] | None:
        """Save the canvas to ``path``: an .ora (Krita, GIMP, MyPaint; Easel reopens it) or a .psd
        (Photoshop and the like) keeps the layers, anything else is the flattened PNG (the visible image
        layers, what Generate works on). Encoded and written on the I/O thread."""
        path = Path(path)
        if not self.doc.has_image:
            self.reporter.notice("There is no canvas to export: open or paste an image first.")
            return None
        if path.suffix.lower() == ".ora":
            data = canvas_ora.snapshot(self.doc)
            return self._spawn(self._write(path, canvas_ora.write, path, data))
        if path.suffix.lower() == ".psd":
            data = canvas_ora.snapshot(self.doc)
            return self._spawn(self._write(path, canvas_psd.write, path, data))
        if path.suffix.lower() != ".png":
            path = path.with_suffix(path.suffix + ".png")
        return self._spawn(self._write(path, write_png_atomic, path, self.doc.image_pil()))

    async def _write(self, path: Path, fn: Callable[..., Any], *args: Any) -> bool:
        self.status.set_activity(f"Saving {path.name}…")
        try:
            await self.bridge.run_io(fn, *args)
        except (OSError, EaselError) as exc:
            self.reporter.report(f"Cannot save {path.name}: {getattr(exc, 'strerror', None) or exc}")
            return False
        finally:
            self.status.set_activity("")
        self.status.set_activity(f"Saved the canvas as {path.name}.")
        return True

    def open_files(self, paths: list[str]) -> None:
        if paths:
            if len(paths) > 1:
                self.reporter.notice(f"Opened {Path(paths[0]).name}; the canvas holds one image at a time.")
            self.open_file(paths[0])

    def paste(self, image: QImage, source: str = "clipboard", mode: str | None = None) -> bool:
        if image is None or image.isNull():
            self.reporter.notice("The clipboard holds no image to paste.")
            return False
        try:
            self.load(qimage_to_pil(image), source, mode)
        except EaselError as exc:
            self.reporter.report(f"Cannot paste: {exc}")
            return False
        return True

    def edit_image(self, image: str | Path | QImage, source: str | None = None,
                   mode: str | None = None) -> asyncio.Task[None] | bool:
        """Make a result, a gallery image or a file the canvas, ready to edit in ``mode`` (see ``load``)."""
        if isinstance(image, QImage):
            return self.paste(image, source or "a result", mode)
        return self.open_file(image, mode)

    def load(self, image: Image.Image, source: str, mode: str | None = None) -> None:
        """A decoded image (RGB or RGBA) becomes the canvas; transparency becomes the mask if wanted.

        Generate then edits the canvas: in ``mode`` ("img2img" or "inpaint") when given, else in
        the editing mode already chosen, or inpaint when it was New image.
        """
        rgb, alpha_mask = split_alpha(image)
        self.doc.set_image(rgb, source, alpha_mask if self.alpha_as_mask else None)
        if mode is not None:
            self.params.edit_mode = mode
        elif self.params.edit_mode == "txt2img":
            self.params.edit_mode = "inpaint"
        self.opened.emit(source)

    # -- edits --------------------------------------------------------------------------------

    def extend(self, left: int, top: int, right: int, bottom: int, fill: str = "blur") -> bool:
        """Outpaint: grow the canvas (undoable); the new area is masked and pre-filled."""
        if not self.doc.has_image:
            self.reporter.notice("Open an image first: there is no canvas to extend.")
            return False
        w, h = self.doc.width + left + right, self.doc.height + top + bottom
        try:
            check_size((w, h), "extended canvas")
        except EaselError as exc:
            self.reporter.report(str(exc))
            return False
        self.doc.extend(left, top, right, bottom, fill)
        self.params.edit_mode = "inpaint"
        return True

    def accept(self) -> Candidate | None:
        cand = self.doc.accept_candidate()
        if cand is not None:
            where = f" (saved as {Path(cand.path).name})" if cand.path else ""
            self.status.set_activity(f"Accepted the result{where}. Ctrl+Z undoes it.")
            self.accepted.emit(cand)
        return cand

    def discard(self) -> None:
        """Drop the results shown over the canvas; their files go to the gallery's trash (``discarded``)."""
        paths = [c.path for c in self.doc.candidates if c.path]
        n = len(self.doc.candidates)
        self.doc.discard_candidates()
        if not n:
            return
        self.status.set_activity(f"Discarded {n} result{'s' if n > 1 else ''}"
                                 + (": in the gallery's trash until it is emptied." if paths else "."))
        if paths:
            self.discarded.emit(paths)

    # -- generation ---------------------------------------------------------------------------

    def blocked_reason(self, mode: str | None = None) -> str:
        """Why Generate cannot edit the canvas now ("" when it can, or when the mode is txt2img), in the
        edit mode chosen, or in ``mode`` ("img2img" / "inpaint": live mode's)."""
        mode = mode or self.params.edit_mode
        if mode == "txt2img":
            return ""
        if not self.doc.has_image:
            return "open an image to edit (File › Open image…), or choose New image"
        if mode == "inpaint" and not self.doc.has_mask():
            return "paint over the area to change on the canvas, or choose Image to image"
        if mode == "instruct" and not self.params.prompt.strip():
            return 'say what to change in the prompt (e.g. "make the sky stormy")'
        if not (mode == "inpaint" and self.params.only_masked):
            w, h = imageprep.padded_size(self.doc.width, self.doc.height)
            if max(w, h) > MAX_SIZE:
                return (f"the canvas is {self.doc.width}×{self.doc.height}: the whole image can be worked on up to "
                        f"{MAX_SIZE} px a side; use Only masked region")
        return ""

    def build_request(self, base: GenerationRequest, mode: str | None = None) -> tuple[GenerationRequest, CanvasJob]:
        """The request that edits the canvas, from the prompt settings in ``base``, in the edit mode
        chosen (or in ``mode``: "img2img" / "inpaint"). InvalidRequest if not possible.

        Whole-image work happens at the canvas size padded to a multiple of 8 (the engine crops the
        padding off); "only masked region" works at the chosen width × height around the mask.
        """
        mode = mode or self.params.edit_mode
        reason = self.blocked_reason(mode)
        if reason:
            raise InvalidRequest("canvas", reason)
        p, doc = self.params, self.doc
        source = doc.image_array.copy()
        image = doc.image_pil()
        if mode == "img2img":
            w, h = imageprep.padded_size(doc.width, doc.height)
            request = base.replace(mode=Mode.IMG2IMG, init_image=image, width=w, height=h, strength=p.strength)
            return request, CanvasJob(source, (0, 0, w, h))
        if p.edit_mode == "instruct":
            # Edit with words: the prompt is the instruction, the whole canvas its context; a painted mask
            # keeps the change inside it (an inpaint, its seam blurred). The instruction says how much
            # changes, so the strength is 1.
            w, h = imageprep.padded_size(doc.width, doc.height)
            if doc.has_mask():
                request = base.replace(mode=Mode.INPAINT, init_image=image, mask=doc.mask_pil(), width=w, height=h,
                                       strength=1.0, only_masked=False, mask_blur=p.mask_blur)
            else:
                request = base.replace(mode=Mode.IMG2IMG, init_image=image, width=w, height=h, strength=1.0)
            return request, CanvasJob(source, (0, 0, w, h))
        only = p.only_masked
        w, h = (p.width, p.height) if only else imageprep.padded_size(doc.width, doc.height)
        request = base.replace(mode=Mode.INPAINT, init_image=image, mask=doc.mask_pil(), width=w, height=h,
                               strength=p.strength, only_masked=only, mask_padding=p.mask_padding,
                               mask_blur=p.mask_blur)
        box = imageprep.masked_box(request.mask, request.mask_padding, w / h) if only else (0, 0, w, h)
        return request, CanvasJob(source, box)

    def controls(self) -> tuple[ControlInput, ...]:
        """The canvas's visible control layers as the request's control inputs, bottom first. GUI thread.

        A painted control layer is the artist's own control image: a scribble layer's strokes (where
        it is painted, in any colour) are binarised by the scribble preprocessor; any other kind, and a
        layer filled by Make from picture (painted over or not), is used as shown. An empty control
        layer follows the picture: its control image is made from the visible image layers (canny
        edges, line art, tile, inpaint with the mask, pose as it is). Depth needs a depth model, which
        loads on the engine's thread only: an empty depth layer is refused in one line (InvalidRequest).
        """
        from engine import preprocess

        if not self.doc.has_image:
            return ()
        picture = None
        out = []
        for guide in self.doc.guides():
            if guide["kind"] != "control":
                continue
            kind = guide["control"]
            painted = guide["mask"].getbbox() is not None
            if painted and guide.get("made_from"):
                # Made from the picture (and perhaps painted over): the control image as shown.
                image, made_by = guide["image"], guide["made_from"]
            elif painted:
                # A scribble is where the artist painted, in any colour: the layer's coverage, binarised.
                image = (preprocess.run("scribble", guide["mask"].convert("RGB")) if kind == "scribble"
                         else guide["image"])
                made_by = "scribble" if kind == "scribble" else ""
            elif kind in ("depth", "scribble"):
                what = ("paint a depth map on it, or fill it with Make from picture" if kind == "depth"
                        else "draw the strokes to follow on it")
                raise InvalidRequest("controls", f"the {kind} control layer \"{guide['name']}\" is empty: {what}")
            else:
                picture = picture if picture is not None else self.doc.image_pil()
                mask = self.doc.mask_pil() if kind == "inpaint" else None
                if kind == "inpaint" and not self.doc.has_mask():
                    raise InvalidRequest("controls", "the inpaint control layer needs a mask: paint the area to fill")
                try:
                    image = preprocess.run(kind, picture, mask=mask, size=picture.size)
                except EaselError as exc:
                    raise InvalidRequest("controls", str(exc)) from None
                made_by = preprocess.PREPROCESSORS[kind]
            out.append(ControlInput(kind=kind, image=image, strength=guide["strength"],
                                    start=guide["start"], end=guide["end"], preprocessor=made_by))
        return tuple(out)

    def make_from_picture(self, key: str | None = None, kind: str | None = None) -> asyncio.Task[bool] | None:
        """Fill control layer ``key`` (the selected one by default) with the control image its kind's
        preprocessor (or ``kind``'s: the layer takes that kind) makes from the picture (the visible image
        layers), so the artist sees what the control model gets and can paint over it. The preprocessor
        runs off the GUI thread: depth (a model) on the engine thread, the others on the I/O thread. One
        undo step; a failure (no depth model: which folder to put one in) is one line."""
        from desktop_app.state.canvas_layers import PICTURE_PREPROCESSORS

        layer = self.doc.layer(key or self.doc.active_key)
        if layer is None or layer.kind != "control":
            self.reporter.notice("Select a control layer first: Make from picture fills it from the picture.")
            return None
        kind = kind or layer.props["control"]
        if kind not in PICTURE_PREPROCESSORS:
            why = ("a pose layer is a figure you pose: Add figure, then drag its joints on the canvas" if kind == "pose"
                   else "the inpaint control is made from the mask when you generate")
            self.reporter.notice(f"{layer.name}: nothing to make from the picture ({why}).")
            return None
        return self._spawn(self._make_from_picture(layer, kind, self.doc.image_pil()))

    async def _make_from_picture(self, layer: Any, kind: str, picture: Image.Image) -> bool:
        from engine import preprocess

        what = _MADE_LABELS[kind]
        self.status.set_activity(f"Making the {what} of the picture for {layer.name}…")
        try:
            if kind == "depth":
                image = await self.bridge.run_on_engine_thread(_depth_map, picture, self.library)
            else:
                image = await self.bridge.run_io(_preprocessed, kind, picture)
        except preprocess.NoDepthModel as exc:
            self.reporter.report(self.depth_missing_line(str(exc)))
            return False
        except EaselError as exc:
            self.reporter.report(f"Cannot make the {what} for {layer.name}: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 (a model or library failing: one line, the details in the log)
            line = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            self.reporter.report(f"Cannot make the {what} for {layer.name}: {line}", exc)
            return False
        finally:
            self.status.set_activity("")
        if self.doc.layer(layer.key) is not layer or image.size != (self.doc.width, self.doc.height):
            self.reporter.notice(f"{layer.name} was deleted or the canvas changed size while its {what} was "
                                 "being made: nothing was changed.")
            return False
        self.doc.set_control_image(layer.key, image, kind, kind)
        self.status.set_activity(f"{layer.name} shows the {what} the control model gets: paint over it to change "
                                 "it; Ctrl+Z undoes it.")
        return True

    def depth_missing_line(self, detail: str = "") -> str:
        """The one line for "no depth model": which files to add, and the folder they go in."""
        from engine import preprocess

        roots = preprocess.depth_folders(self.library) if self.library is not None else []
        if not roots:
            return f"Cannot make a depth map: {detail or 'no depth model found'}"
        return ("Cannot make a depth map: no depth model in the model folders. Put a Depth Anything (or DPT) folder "
                "from Hugging Face (config.json, preprocessor_config.json, model.safetensors) in "
                f"{roots[0]}{os.sep} and try again.")

    def references(self) -> tuple[ReferenceInput, ...]:
        """The canvas's visible reference layers as the request's reference images (IP-Adapter), bottom
        first: each layer's painted part (cropped to it) with the layer's weight. An empty reference layer
        is refused in one line (InvalidRequest). GUI thread."""
        if not self.doc.has_image:
            return ()
        out = []
        for guide in self.doc.guides():
            if guide["kind"] != "reference":
                continue
            box = guide["mask"].getbbox()
            if box is None:
                raise InvalidRequest("references", f"the reference layer \"{guide['name']}\" is empty: open a picture "
                                     "into it (Add ▸ Reference image…) or paint on it")
            out.append(ReferenceInput(image=guide["image"].crop(box), weight=guide["weight"]))
        return tuple(out)

    def regions(self) -> tuple[RegionInput, ...]:
        """The canvas's visible region layers that have a prompt, as the request's regions, bottom first
        (a higher layer wins where they overlap): each layer's painted alpha is its area. A region layer
        with a prompt but nothing painted is refused in one line (InvalidRequest). GUI thread."""
        if not self.doc.has_image:
            return ()
        out = []
        for guide in self.doc.guides():
            if guide["kind"] != "region" or not guide["prompt"].strip():
                continue
            if guide["mask"].getbbox() is None:
                raise InvalidRequest("regions", f"the region layer \"{guide['name']}\" is empty: paint the area "
                                     f"where \"{guide['prompt'].strip()[:40]}\" goes")
            out.append(RegionInput(mask=guide["mask"], prompt=guide["prompt"]))
        return tuple(out)

    def with_guides(self, request: GenerationRequest,
                    notice: Callable[[str], None] | None = None) -> GenerationRequest:
        """``request`` with the canvas's visible control layers (ControlNet), reference layers (IP-Adapter)
        and region layers (areas with their own prompts) in it. A model that takes no regions runs without
        them, with one notice (the layers stay), given to ``notice`` (default: the window's banner; live
        mode passes one that says each notice once a session). GUI thread; InvalidRequest (one line) for
        an empty layer that needs pixels."""
        controls, references, regions = self.controls(), self.references(), self.regions()
        if controls:
            request = request.replace(controls=controls)
        if references:
            request = request.replace(references=references)
        if regions:
            why = self.regions_refusal(request.model)
            if why:
                n = len(regions)
                say = notice or self.reporter.notice
                say(f"{why}: " + ("the region layer was left out of this image (it stays on the canvas)." if n == 1
                                  else f"the {n} region layers were left out of this image (they stay on the canvas)."))
            else:
                request = request.replace(regions=regions)
        return request

    def on_job_finished(self, job: Any, outcome: Outcome) -> None:
        origin: CanvasJob = job.origin
        saved = iter(outcome.paths)  # in order, for the images that were saved (not a full disk's)
        paths = [None if i in outcome.unsaved else str(next(saved, "")) or None for i in range(len(outcome.images))]
        shown = self.doc.add_candidates(list(outcome.images), paths, list(outcome.result.seeds), origin.source)
        if not shown:
            self.reporter.notice("The canvas changed size while this was generating, so the result is not "
                                 "shown over it; it is in the gallery.")
            return
        n = len(self.doc.candidates)
        self.status.set_activity(f"{n} result{'s' if n > 1 else ''} over the canvas: Enter accepts, "
                                 "Backspace discards, C compares before/after.")


_MADE_LABELS = {"canny": "canny edges", "lineart": "line art", "depth": "depth map", "scribble": "scribble",
                "tile": "tile image"}


def _preprocessed(kind: str, picture: Image.Image) -> Image.Image:
    """``kind``'s control image of ``picture`` (OpenCV: no model). I/O thread."""
    from engine import preprocess

    return preprocess.run(kind, picture, size=picture.size)


def _depth_map(picture: Image.Image, library: Any) -> Image.Image:
    """A depth map of ``picture`` from the library's depth model. Engine thread (loads torch and the model)."""
    from engine import preprocess

    return preprocess.run("depth", picture, library=library)


def _reason(exc: EaselError, name: str) -> str:
    text = str(exc)
    prefix = f"image {name}: "
    return text[len(prefix):] if text.startswith(prefix) else text

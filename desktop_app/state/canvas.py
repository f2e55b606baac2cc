"""The canvas document: an image layer, a mask layer, an undo stack, and result candidates.

Pixels live in QImages that own their memory, edited through numpy views of that memory (no copy
between painting and display): the image as 32-bit RGB (what Qt draws fastest), the mask as 8-bit
indexed (its colour table is the overlay colour with an alpha per mask value, so changing the overlay
colour or opacity touches no pixels). Qt owning the memory ties the pixels' lifetime to the QImage.
(A crash under load was once blamed on QImages wrapping numpy buffers; it was PySide6 6.12.0 losing
references to True on every emit(), which the dependency pin excludes. With 6.11 such QImages keep
their buffer alive and show no reference drift, but this layout needs no copy either, so it stays.)
Every edit goes through the QUndoStack as a command that stores only the rect it changed. GUI thread only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from PIL import Image
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QImage, QUndoStack, qRgba

from desktop_app.state import mask_ops
from desktop_app.state.canvas_commands import ExtendCommand, InvertCommand, PatchCommand, ReplaceCommand
from desktop_app.state.mask_ops import Rect
from engine.imageprep import extend_canvas
from engine.lazy import LazyModule

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path

# Byte positions of R, G, B, A in a Format_RGB32 pixel (it is a native-endian 0xAARRGGBB word).
_R, _G, _B, _A = (2, 1, 0, 3) if sys.byteorder == "little" else (1, 2, 3, 0)
TOOLS = ("brush", "eraser", "rectangle", "lasso")


def rgb_to_array(image: Image.Image) -> np.ndarray:
    src = np.asarray(image.convert("RGB"))
    out = np.empty((*src.shape[:2], 4), np.uint8)
    out[..., _R], out[..., _G], out[..., _B], out[..., _A] = src[..., 0], src[..., 1], src[..., 2], 255
    return out


def array_to_rgb(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(arr[..., [_R, _G, _B]]), "RGB")


def qimage_to_array(image: QImage) -> np.ndarray:
    """A copy of ``image`` as an (h, w, 4) Format_RGB32 array (alpha composited over white)."""
    if image.hasAlphaChannel():
        flat = QImage(image.size(), QImage.Format.Format_RGB32)
        flat.fill(QColor(255, 255, 255))
        from PySide6.QtGui import QPainter

        p = QPainter(flat)
        p.drawImage(0, 0, image)
        p.end()
        image = flat
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    w, h = image.width(), image.height()
    view = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
    return view.reshape(h, image.bytesPerLine())[:, : w * 4].reshape(h, w, 4).copy()


def wrap_rgb32(arr: np.ndarray) -> QImage:
    """A Qt-owned Format_RGB32 QImage holding a copy of ``arr``."""
    image, view = new_layer(arr.shape[1], arr.shape[0], QImage.Format.Format_RGB32)
    view[...] = arr
    return image


def new_layer(width: int, height: int, fmt: QImage.Format) -> tuple[QImage, np.ndarray]:
    """A QImage that owns its pixels and a writable numpy view of them ((h, w, 4) or (h, w)).

    Keep the QImage referenced as long as the view is used, and never let it be implicitly shared
    while writing (a shared QImage would detach from the view).
    """
    image = QImage(width, height, fmt)
    if image.isNull() and width and height:
        raise MemoryError(f"not enough memory for a {width}x{height} canvas")
    depth = 4 if fmt != QImage.Format.Format_Indexed8 else 1
    if not width or not height:
        return image, np.zeros((height, width, depth) if depth == 4 else (height, width), np.uint8)
    bpl = image.bytesPerLine()
    raw = np.frombuffer(image.bits(), np.uint8, count=bpl * height).reshape(height, bpl)
    view = raw[:, : width * depth]
    return image, (view.reshape(height, width, 4) if depth == 4 else view)


@dataclass
class Candidate:
    """One generated image waiting over the canvas for accept or discard."""

    image: QImage  # Format_RGB32, the canvas size
    path: str | None
    seed: int


class BrushSettings(QObject):
    """The tool and its settings, and how the mask is shown."""

    tool_changed = Signal(str)
    size_changed = Signal(float)
    hardness_changed = Signal(float)
    opacity_changed = Signal(float)
    overlay_changed = Signal()
    mask_visible_changed = Signal(bool)

    MIN_SIZE, MAX_SIZE = 1.0, 1000.0

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._tool, self._size, self._hardness, self._opacity = "brush", 48.0, 0.5, 1.0
        self.overlay_colour = QColor(255, 40, 90)
        self.overlay_opacity = 0.5
        self._mask_visible = True

    tool = property(lambda self: self._tool)
    size = property(lambda self: self._size)
    hardness = property(lambda self: self._hardness)
    opacity = property(lambda self: self._opacity)
    mask_visible = property(lambda self: self._mask_visible)

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        if tool != self._tool:
            self._tool = tool
            self.tool_changed.emit(tool)

    def set_size(self, size: float) -> None:
        size = float(max(self.MIN_SIZE, min(self.MAX_SIZE, size)))
        if size != self._size:
            self._size = size
            self.size_changed.emit(size)

    def step_size(self, direction: int) -> None:
        """``[`` / ``]``: about 15% smaller or larger, at least one pixel."""
        factor = 1.15 if direction > 0 else 1 / 1.15
        new = self._size * factor
        if abs(new - self._size) < 1:
            new = self._size + (1 if direction > 0 else -1)
        self.set_size(round(new))

    def set_hardness(self, value: float) -> None:
        value = float(max(0.0, min(1.0, value)))
        if value != self._hardness:
            self._hardness = value
            self.hardness_changed.emit(value)

    def set_opacity(self, value: float) -> None:
        value = float(max(0.01, min(1.0, value)))
        if value != self._opacity:
            self._opacity = value
            self.opacity_changed.emit(value)

    def set_overlay(self, colour: QColor | None = None, opacity: float | None = None) -> None:
        if colour is not None:
            self.overlay_colour = QColor(colour)
        if opacity is not None:
            self.overlay_opacity = float(max(0.05, min(1.0, opacity)))
        self.overlay_changed.emit()

    def set_mask_visible(self, visible: bool) -> None:
        if visible != self._mask_visible:
            self._mask_visible = visible
            self.mask_visible_changed.emit(visible)


class CanvasDocument(QObject):
    document_replaced = Signal()  # a new image or a new size: views rebuild
    image_changed = Signal(object)  # Rect in image pixels
    mask_changed = Signal(object)  # Rect
    candidates_changed = Signal()  # the list, the index or before/after changed

    def __init__(self, brush: BrushSettings | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.brush = brush or BrushSettings(self)
        self.undo_stack = QUndoStack(self)
        # No image yet: empty layers, made without numpy (the window opens before numpy is imported).
        self.image_qimage, self.mask_qimage = QImage(), QImage()
        self._image_array: np.ndarray | None = None
        self._mask_array: np.ndarray | None = None
        self.source = ""  # where the image came from (a file name, "clipboard", "result #3")
        self.revision = 0  # bumps on every image change (candidates remember it)
        self._stroke: mask_ops.StrokeBuffer | None = None
        self._last: tuple[float, float] | None = None
        self._carry = 0.0
        self.candidates: list[Candidate] = []
        self.candidate_index = 0
        self.show_before = False
        self._candidate_source: np.ndarray | None = None
        self.brush.overlay_changed.connect(self._update_colour_table)

    # -- layers -------------------------------------------------------------------------------

    @property
    def _image(self) -> np.ndarray:
        if self._image_array is None:
            self._image_array = np.zeros((0, 0, 4), np.uint8)
        return self._image_array

    @property
    def _mask(self) -> np.ndarray:
        if self._mask_array is None:
            self._mask_array = np.zeros((0, 0), np.uint8)
        return self._mask_array

    @property
    def has_image(self) -> bool:
        return self.width > 0 and self.height > 0

    @property
    def width(self) -> int:
        return self.image_qimage.width()

    @property
    def height(self) -> int:
        return self.image_qimage.height()

    @property
    def mask(self) -> np.ndarray:
        return self._mask

    @property
    def image_array(self) -> np.ndarray:
        return self._image

    def layer_array(self, layer: str) -> np.ndarray:
        return self._mask if layer == "mask" else self._image

    def mask_bytes(self) -> bytes:
        return self._mask.tobytes()

    def has_mask(self) -> bool:
        return self.has_image and bool(self._mask.any())

    def image_pil(self) -> Image.Image:
        return array_to_rgb(self._image)

    def mask_pil(self) -> Image.Image:
        return Image.fromarray(self._mask.copy(), "L")

    def _set_layers(self, image: np.ndarray, mask: np.ndarray) -> None:
        """New layers holding copies of ``image`` (h, w, 4 RGB32 bytes) and ``mask`` (h, w)."""
        h, w = mask.shape
        self.image_qimage, self._image_array = new_layer(w, h, QImage.Format.Format_RGB32)
        self.mask_qimage, self._mask_array = new_layer(w, h, QImage.Format.Format_Indexed8)
        if w and h:
            self._image[...] = image
            self._mask[...] = mask
        self._update_colour_table(emit=False)

    def _update_colour_table(self, emit: bool = True) -> None:
        c = self.brush.overlay_colour
        a = self.brush.overlay_opacity
        if not self.mask_qimage.isNull():
            self.mask_qimage.setColorTable([qRgba(c.red(), c.green(), c.blue(), int(round(i * a))) for i in range(256)])
        if emit and self.has_image:
            self.mask_changed.emit((0, 0, self.width, self.height))

    def notify(self, layer: str, rect: Rect) -> None:
        if layer == "mask":
            self.mask_changed.emit(rect)
        else:
            self.revision += 1
            self.image_changed.emit(rect)

    # -- whole-document changes ---------------------------------------------------------------

    def set_image(self, image: Image.Image, source: str, mask: Image.Image | None = None) -> None:
        """A new canvas from a PIL image (and optional mask): undoable, like every edit."""
        arr = rgb_to_array(image)
        m = np.zeros(arr.shape[:2], np.uint8) if mask is None else np.array(mask.convert("L"), np.uint8)
        if m.shape != arr.shape[:2]:
            raise ValueError("the mask is not the image's size")
        self.discard_candidates()
        self.undo_stack.push(ReplaceCommand(self, arr, m, source, f"Open {source}"))

    def swap_layers(self, image: np.ndarray, mask: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray, str]:
        old = self._image.copy(), self._mask.copy(), self.source
        self._set_layers(image, mask)
        self.source = source
        self.revision += 1
        self.document_replaced.emit()
        return old

    def extend(self, left: int, top: int, right: int, bottom: int, fill: str = "blur") -> None:
        """Outpaint: grow the canvas; the new area joins the mask, pre-filled for a good start."""
        if not self.has_image or not (left or top or right or bottom):
            return
        self.discard_candidates()
        self.undo_stack.push(ExtendCommand(self, (left, top, right, bottom), fill))

    def extend_in_place(self, amounts: tuple[int, int, int, int], fill: str) -> None:
        l, t, r, b = amounts
        image, new_area = extend_canvas(self.image_pil(), l, t, r, b, fill=fill)
        mask = np.array(new_area, np.uint8)
        mask[t:t + self.height, l:l + self.width] = self._mask
        self._set_layers(rgb_to_array(image), mask)
        self.revision += 1
        self.document_replaced.emit()

    def crop_in_place(self, amounts: tuple[int, int, int, int]) -> None:
        l, t, r, b = amounts
        h, w = self.height - t - b, self.width - l - r
        self._set_layers(self._image[t:t + h, l:l + w], self._mask[t:t + h, l:l + w])
        self.revision += 1
        self.document_replaced.emit()

    # -- strokes ------------------------------------------------------------------------------

    def begin_stroke(self, x: float, y: float, pressure: float = 1.0) -> None:
        """Start a brush or eraser stroke at image coordinates (x, y) with the current settings."""
        if not self.has_image:
            return
        b = self.brush
        self._stroke = mask_ops.StrokeBuffer.start(self._mask, b.tool == "eraser", b.opacity)
        self._last, self._carry = (x, y), 0.0
        self._dab(x, y, pressure)

    def stroke_to(self, x: float, y: float, pressure: float = 1.0) -> None:
        if self._stroke is None or self._last is None:
            return
        spacing = max(1.0, self.brush.size * max(0.05, pressure) * 0.12)
        points, self._carry = mask_ops.dabs_along(*self._last, x, y, spacing, self._carry)
        dirty = None
        for px, py in points:
            dirty = mask_ops.union(dirty, self._dab(px, py, pressure, emit=False))
        self._last = (x, y)
        if dirty is not None:
            self.mask_changed.emit(dirty)

    def _dab(self, x: float, y: float, pressure: float, emit: bool = True) -> Rect | None:
        rect, cover = mask_ops.dab(self.brush.size * max(0.05, min(1.0, pressure)), self.brush.hardness, x, y)
        changed = self._stroke.apply_dab(self._mask, rect, cover)
        if emit and changed is not None:
            self.mask_changed.emit(changed)
        return changed

    def end_stroke(self) -> None:
        stroke, self._stroke, self._last = self._stroke, None, None
        if stroke is None or stroke.dirty is None:
            return
        l, t, r, b = stroke.dirty
        before = stroke.before_of(self._mask, stroke.dirty)
        if np.array_equal(before, self._mask[t:b, l:r]):
            return
        text = "Erase" if stroke.erase else "Paint mask"
        self.undo_stack.push(PatchCommand(self, "mask", stroke.dirty, before, text))

    @property
    def stroking(self) -> bool:
        return self._stroke is not None

    # -- mask operations ----------------------------------------------------------------------

    def _edit_mask(self, rect: Rect | None, new: np.ndarray, text: str) -> None:
        if rect is None:
            return
        l, t, r, b = rect
        if np.array_equal(new, self._mask[t:b, l:r]):
            return
        before = self._mask[t:b, l:r].copy()
        self._mask[t:b, l:r] = new
        self.mask_changed.emit(rect)
        self.undo_stack.push(PatchCommand(self, "mask", rect, before, text))

    def fill_polygon(self, points: list[tuple[float, float]], erase: bool = False) -> None:
        """Rectangle and lasso: fill (or with ``erase`` clear) the polygon at the brush opacity."""
        found = mask_ops.polygon_coverage(points, self.width, self.height) if self.has_image else None
        if found is None:
            return
        rect, cover = found
        l, t, r, b = rect
        new = self._mask[t:b, l:r].copy()
        mask_ops.fill(new, (0, 0, r - l, b - t), cover, self.brush.opacity, erase)
        self._edit_mask(rect, new, "Erase area" if erase else "Fill area")

    def fill_rect(self, rect: Rect, erase: bool = False) -> None:
        l, t, r, b = rect
        self.fill_polygon([(l, t), (r - 1, t), (r - 1, b - 1), (l, b - 1)], erase)

    def invert_mask(self) -> None:
        if self.has_image:
            self.undo_stack.push(InvertCommand(self))

    def invert_in_place(self) -> None:
        np.subtract(255, self._mask, out=self._mask)
        self.mask_changed.emit((0, 0, self.width, self.height))

    def clear_mask(self) -> None:
        box = mask_ops.bbox(self._mask) if self.has_image else None
        if box is not None:
            l, t, r, b = box
            self._edit_mask(box, np.zeros((b - t, r - l), np.uint8), "Clear mask")

    def grow_mask(self, radius: int) -> None:
        """Grow (radius > 0) or shrink (< 0) the mask by ``radius`` pixels."""
        rect = mask_ops.morph_region(self._mask, radius) if self.has_image and radius else None
        if rect is not None:
            self._edit_mask(rect, mask_ops.grow(self._mask, radius, rect), "Grow mask" if radius > 0 else "Shrink mask")

    def feather_mask(self, radius: int) -> None:
        rect = mask_ops.morph_region(self._mask, radius * 3) if self.has_image and radius > 0 else None
        if rect is not None:
            self._edit_mask(rect, mask_ops.feather(self._mask, radius, rect), "Feather mask")

    # -- candidates ---------------------------------------------------------------------------

    def add_candidates(self, images: list[QImage], paths: list[str | None], seeds: list[int], source: np.ndarray) -> bool:
        """Show generated images over the canvas. ``source`` is the canvas image the job started from.

        Returns False (and shows nothing) when the canvas no longer has that size.
        """
        if source.shape != self._image.shape:
            return False
        if self._candidate_source is None or not np.array_equal(self._candidate_source, source):
            self.candidates = []
        self._candidate_source = source
        for image, path, seed in zip(images, paths, seeds):
            if image.size().toTuple() == (self.width, self.height):
                self.candidates.append(Candidate(image.convertToFormat(QImage.Format.Format_RGB32), path, seed))
        if not self.candidates:
            return False
        self.candidate_index = len(self.candidates) - len(images) if len(images) <= len(self.candidates) else 0
        self.show_before = False
        self.candidates_changed.emit()
        return True

    def current_candidate(self) -> Candidate | None:
        return self.candidates[self.candidate_index] if self.candidates else None

    def select_candidate(self, index: int) -> None:
        if self.candidates:
            self.candidate_index = index % len(self.candidates)
            self.show_before = False
            self.candidates_changed.emit()

    def set_show_before(self, before: bool) -> None:
        if self.candidates and before != self.show_before:
            self.show_before = before
            self.candidates_changed.emit()

    def accept_candidate(self) -> Candidate | None:
        """Make the shown candidate the canvas (undoable): only the pixels it changed are written."""
        cand = self.current_candidate()
        if cand is None:
            return None
        new = qimage_to_array(cand.image)
        source = self._candidate_source
        changed = np.any(new[..., :3] != source[..., :3], axis=2)
        rect = mask_ops.bbox(changed)
        self.discard_candidates()
        # One undo step: the result goes in and the mask that made it is cleared, so the next
        # inpaint or outpaint does not silently regenerate this area again.
        self.undo_stack.beginMacro("Accept result")
        if rect is not None:
            l, t, r, b = rect
            before = self._image[t:b, l:r].copy()
            np.copyto(self._image[t:b, l:r], new[t:b, l:r], where=changed[t:b, l:r, None])
            self.notify("image", rect)
            self.undo_stack.push(PatchCommand(self, "image", rect, before, "Accept result"))
        self.clear_mask()
        self.undo_stack.endMacro()
        return cand

    def discard_candidates(self) -> None:
        if self.candidates or self._candidate_source is not None:
            self.candidates, self.candidate_index, self.show_before = [], 0, False
            self._candidate_source = None
            self.candidates_changed.emit()

    # -- memory (for the benchmark and the undo view) ------------------------------------------

    def undo_bytes(self) -> int:
        return sum(getattr(self.undo_stack.command(i), "nbytes", 0) for i in range(self.undo_stack.count()))

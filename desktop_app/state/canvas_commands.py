"""Undo commands for the canvas. Each stores only what it changed: a patch of the rect it touched.

A patch command swaps its stored pixels with the document's (the stored copy is "the other state"),
so one copy serves both undo and redo, and memory grows with the area of each stroke, not with the
image size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QUndoCommand

from desktop_app.state.mask_ops import Rect
from engine.lazy import LazyModule

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path

if TYPE_CHECKING:
    from desktop_app.state.canvas import CanvasDocument


class PatchCommand(QUndoCommand):
    """Swap ``data`` with the ``layer`` ("mask" or "image") inside ``rect``.

    Created after the change was made (``data`` = the pixels as they were), so the first redo, which
    QUndoStack.push calls, does nothing.
    """

    def __init__(self, doc: CanvasDocument, layer: str, rect: Rect, data: np.ndarray, text: str):
        super().__init__(text)
        self._doc, self._layer, self._rect, self._data = doc, layer, rect, data
        self._first = True

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def _swap(self) -> None:
        l, t, r, b = self._rect
        target = self._doc.layer_array(self._layer)[t:b, l:r]
        current = target.copy()
        target[...] = self._data
        self._data = current
        self._doc.notify(self._layer, self._rect)

    def redo(self) -> None:
        if self._first:
            self._first = False
            return
        self._swap()

    def undo(self) -> None:
        self._swap()


class InvertCommand(QUndoCommand):
    """Invert the mask: its own inverse, so it stores nothing."""

    def __init__(self, doc: CanvasDocument):
        super().__init__("Invert mask")
        self._doc = doc

    nbytes = 0

    def redo(self) -> None:
        self._doc.invert_in_place()

    def undo(self) -> None:
        self._doc.invert_in_place()


class ExtendCommand(QUndoCommand):
    """Grow the canvas (outpaint); undo crops back to the original, which the extension kept intact.

    The extension is recomputed on redo (it is deterministic), so nothing is stored but the amounts.
    """

    def __init__(self, doc: CanvasDocument, amounts: tuple[int, int, int, int], fill: str):
        super().__init__("Extend canvas")
        self._doc, self._amounts, self._fill = doc, amounts, fill

    nbytes = 0

    def redo(self) -> None:
        self._doc.extend_in_place(self._amounts, self._fill)

    def undo(self) -> None:
        self._doc.crop_in_place(self._amounts)


class ReplaceCommand(QUndoCommand):
    """A new document (open, paste, edit a result): the one place a whole image is kept, because
    everything changed. Swaps the stored image and mask with the document's."""

    def __init__(self, doc: CanvasDocument, image: np.ndarray, mask: np.ndarray, source: str, text: str):
        super().__init__(text)
        self._doc, self._image, self._mask, self._source = doc, image, mask, source

    @property
    def nbytes(self) -> int:
        return self._image.nbytes + self._mask.nbytes

    def _swap(self) -> None:
        self._image, self._mask, self._source = self._doc.swap_layers(self._image, self._mask, self._source)

    redo = _swap
    undo = _swap

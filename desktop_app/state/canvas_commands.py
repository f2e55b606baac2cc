"""Undo commands for the canvas. Each stores only what it changed: a patch of the rect it touched,
a layer list (add, delete, reorder: the layers themselves are shared, not copied) or a layer's
attributes.

A patch command swaps its stored pixels with the document's (the stored copy is "the other state"),
so one copy serves both undo and redo, and memory grows with the area of each stroke, not with the
image size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QUndoCommand

from desktop_app.state.mask_ops import Rect
from engine.lazy import LazyModule

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path

if TYPE_CHECKING:
    from desktop_app.state.canvas import CanvasDocument, DocState
    from desktop_app.state.canvas_layers import Layer


class PatchCommand(QUndoCommand):
    """Swap ``data`` with the pixels of ``layer`` (a layer's key, or "mask") inside ``rect``; or, with
    ``pieces`` (a list of (rect, data): the 64 px tiles a stroke touched), inside each piece, so a
    long thin stroke across a big canvas keeps only the tiles under it, not its whole bounding box.

    Created after the change was made (``data`` = the pixels as they were), so the first redo, which
    QUndoStack.push calls, does nothing.
    """

    def __init__(self, doc: CanvasDocument, layer: str, rect: Rect, data: np.ndarray | None, text: str,
                 pieces: list[tuple[Rect, np.ndarray]] | None = None):
        super().__init__(text)
        self._doc, self._layer, self._rect = doc, layer, rect
        self._pieces = pieces if pieces is not None else [(rect, data)]
        self._first = True

    @property
    def nbytes(self) -> int:
        return sum(data.nbytes for _rect, data in self._pieces)

    def _swap(self) -> None:
        arr = self._doc.layer_array(self._layer)
        swapped = []
        for rect, data in self._pieces:
            l, t, r, b = rect
            target = arr[t:b, l:r]
            current = target.copy()
            target[...] = data
            swapped.append((rect, current))
        self._pieces = swapped
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
    """A new document (open, paste, edit a result, open an .ora): the one place whole layers are
    kept, because everything changed. Swaps the stored stack, mask and source with the document's."""

    def __init__(self, doc: CanvasDocument, state: DocState, text: str):
        super().__init__(text)
        self._doc, self._state = doc, state

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self._state.layers) + self._state.mask.nbytes

    def _swap(self) -> None:
        self._state = self._doc.swap_state(self._state)

    redo = _swap
    undo = _swap


class StackCommand(QUndoCommand):
    """Add, delete or reorder layers: swaps the document's layer list (the Layer objects themselves,
    pixels and all, are kept by the lists, so nothing is copied) and the active layer."""

    def __init__(self, doc: CanvasDocument, layers: list[Layer], active: str, text: str):
        super().__init__(text)
        self._doc, self._layers, self._active = doc, list(layers), active

    @property
    def nbytes(self) -> int:
        mine = {id(layer) for layer in self._doc.layers}
        return sum(layer.nbytes for layer in self._layers if id(layer) not in mine)

    def _swap(self) -> None:
        self._layers, self._active = self._doc.swap_stack(self._layers, self._active)

    redo = _swap
    undo = _swap


class LayerAttrsCommand(QUndoCommand):
    """A layer's name, visibility, opacity or control/region properties; successive edits of the
    same field of the same layer (an opacity slider being dragged) merge into one undo step."""

    ID = 0x1A7E

    def __init__(self, doc: CanvasDocument, layer: Layer, before: dict[str, Any], after: dict[str, Any], text: str,
                 merge_key: str = ""):
        super().__init__(text)
        self._doc, self._layer, self._before, self._after = doc, layer, before, after
        self._merge_key = merge_key

    nbytes = 0

    def id(self) -> int:  # noqa: A003 (Qt name)
        return self.ID if self._merge_key else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 (Qt name)
        if not isinstance(other, LayerAttrsCommand) or other._layer is not self._layer \
                or other._merge_key != self._merge_key:
            return False
        self._after = other._after
        return True

    def redo(self) -> None:
        self._doc.set_layer_attributes(self._layer, self._after)

    def undo(self) -> None:
        self._doc.set_layer_attributes(self._layer, self._before)

"""The canvas document: a stack of layers (canvas_layers: image, control and region layers you
paint on), the mask, an undo stack, and result candidates.

Pixels live in QImages that own their memory, edited through numpy views of that memory (no copy
between painting and display): layers as premultiplied ARGB (what Qt draws fastest with
transparency), the mask as 8-bit indexed (its colour table is the overlay colour with an alpha per
mask value, so changing the overlay colour or opacity touches no pixels). What generation works on
is the composite of the visible image layers over white (``image_array`` / ``image_pil``), made on
demand and kept until an image layer changes. Qt owning the memory ties the pixels' lifetime to the QImage.
(A crash under load was once blamed on QImages wrapping numpy buffers; it was PySide6 6.12.0 losing
references to True on every emit(), which the dependency pin excludes. With 6.11 such QImages keep
their buffer alive and show no reference drift, but this layout needs no copy either, so it stays.)
Every edit goes through the QUndoStack as a command that stores only what it changed (the rect of a
stroke, a layer list, a layer's attributes). GUI thread only.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QImage, QUndoStack, qRgba

from desktop_app.state import mask_ops
from desktop_app.state.canvas_commands import (
    ExtendCommand,
    InvertCommand,
    LayerAttrsCommand,
    PatchCommand,
    ReplaceCommand,
    StackCommand,
)
from desktop_app.state.canvas_layers import (
    KIND_LABELS,
    LAYER_KINDS,
    MAX_PEOPLE,
    Layer,
    clean_props,
    colour_bytes,
    compose,
    flood_region,
)
from desktop_app.state.canvas_pose import bounds, is_pose_layer, joint_at, pose_of, standing_figure
from desktop_app.state.mask_ops import Rect
from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")
imageprep = LazyModule("engine.imageprep")  # first used when the canvas is extended

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path

# Byte positions of R, G, B, A in a Format_RGB32 pixel (it is a native-endian 0xAARRGGBB word).
_R, _G, _B, _A = (2, 1, 0, 3) if sys.byteorder == "little" else (1, 2, 3, 0)
TOOLS = ("brush", "eraser", "rectangle", "lasso", "fill", "picker")


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
class DocState:
    """Everything a whole-document change replaces (undo swaps it back)."""

    layers: list[Layer]
    mask: np.ndarray  # (h, w) uint8
    source: str
    active: str = "mask"


@dataclass
class Candidate:
    """One generated image waiting over the canvas for accept or discard."""

    image: QImage  # Format_RGB32, the canvas size
    path: str | None
    seed: int


class BrushSettings(QObject):
    """The tool and its settings, and how the mask is shown."""

    tool_changed = Signal(str)
    colour_changed = Signal(QColor)
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
        self._colour = QColor(20, 20, 24)  # what the brush and fill lay on a layer

    @property
    def colour(self) -> QColor:
        return QColor(self._colour)

    def set_colour(self, colour: QColor) -> None:
        colour = QColor(colour.red(), colour.green(), colour.blue())  # opaque: opacity is its own setting
        if colour.isValid() and colour != self._colour:
            self._colour = colour
            self.colour_changed.emit(QColor(colour))

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
    document_replaced = Signal()  # a new document or a new size: views rebuild
    image_changed = Signal(object)  # Rect in image pixels: the composite of the image layers changed there
    mask_changed = Signal(object)  # Rect
    layer_pixels_changed = Signal(str, object)  # a layer's key, Rect: its pixels changed there
    layers_changed = Signal()  # the stack, a layer's attributes or the active layer changed
    candidates_changed = Signal()  # the list, the index or before/after changed
    pose_changed = Signal(str)  # a pose layer's key: its figures moved (while a joint is dragged, and on undo)

    def __init__(self, brush: BrushSettings | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.brush = brush or BrushSettings(self)
        self.undo_stack = QUndoStack(self)
        # No image yet: no layers, an empty mask made without numpy (the window opens before numpy is imported).
        self.layers: list[Layer] = []  # bottom first
        self.active_key = "mask"  # the layer the tools work on: a layer's key, or "mask"
        self.mask_qimage = QImage()
        self._mask_array: np.ndarray | None = None
        self._composite: np.ndarray | None = None
        self._composite_qimage: QImage | None = None
        self.source = ""  # where the image came from (a file name, "clipboard", "result #3")
        self.revision = 0  # bumps on every change of the composite
        self._stroke: mask_ops.StrokeBuffer | None = None
        self._stroke_key = "mask"
        self._last: tuple[float, float] | None = None
        self._carry = 0.0
        self.candidates: list[Candidate] = []
        self.candidate_index = 0
        self.show_before = False
        self._candidate_source: np.ndarray | None = None
        self._pose_drag: dict[str, Any] | None = None
        self.brush.overlay_changed.connect(self._update_colour_table)

    # -- the stack ----------------------------------------------------------------------------

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
        return self.mask_qimage.width()

    @property
    def height(self) -> int:
        return self.mask_qimage.height()

    @property
    def mask(self) -> np.ndarray:
        return self._mask

    def layer(self, key: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.key == key), None)

    def index_of(self, key: str) -> int:
        return next((i for i, layer in enumerate(self.layers) if layer.key == key), -1)

    @property
    def active_layer(self) -> Layer | None:
        """The layer the tools paint on; None while they work on the mask."""
        return self.layer(self.active_key)

    def set_active(self, key: str) -> None:
        """Choose the layer the tools work on ("mask" or a layer's key). Not an edit: not undone."""
        if key != "mask" and self.layer(key) is None:
            raise ValueError(f"no layer {key!r}")
        if key != self.active_key:
            self.active_key = key
            self.layers_changed.emit()

    def image_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.kind == "image"]

    def paint_target(self) -> Layer | None:
        """Where an accepted result goes: the top visible image layer (else the top image layer)."""
        images = self.image_layers()
        visible = [layer for layer in images if layer.visible]
        return (visible or images or [None])[-1]

    def layer_array(self, key: str) -> np.ndarray:
        if key == "mask":
            return self._mask
        layer = self.layer(key)
        if layer is None:
            raise KeyError(key)
        return layer.array

    @property
    def image_array(self) -> np.ndarray:
        """The visible image layers over white as an (h, w, 4) Format_RGB32 array. Do not write to it."""
        if self._composite is None:
            qimage = self.composite_qimage()
            if qimage.isNull():
                self._composite = np.zeros((self.height, self.width, 4), np.uint8)
            else:
                w, h = qimage.width(), qimage.height()
                view = np.frombuffer(qimage.constBits(), np.uint8, count=qimage.bytesPerLine() * h)
                self._composite = view.reshape(h, qimage.bytesPerLine())[:, : w * 4].reshape(h, w, 4).copy()
        return self._composite

    def composite_qimage(self) -> QImage:
        """The visible image layers over white (Format_RGB32): what generation works on."""
        if self._composite_qimage is None:
            image = QImage(self.width, self.height, QImage.Format.Format_RGB32)
            if self.has_image and image.isNull():
                raise MemoryError(f"not enough memory for a {self.width}x{self.height} canvas")
            compose(image, self.image_layers(), background=QColor(255, 255, 255))
            self._composite_qimage = image
        return self._composite_qimage

    def _invalidate(self) -> None:
        self._composite = self._composite_qimage = None
        self.revision += 1

    def mask_bytes(self) -> bytes:
        return self._mask.tobytes()

    def has_mask(self) -> bool:
        return self.has_image and bool(self._mask.any())

    def image_pil(self) -> Image.Image:
        return array_to_rgb(self.image_array)

    def mask_pil(self) -> Image.Image:
        return Image.fromarray(self._mask.copy(), "L")

    def guides(self) -> list[dict[str, Any]]:
        """The visible control, region and reference layers, bottom first, for the engine: each as
        {"kind", "name", "image" (RGB over black: the control image), "mask" (L: where it was painted),
        "opacity", and its properties (control: "control", "strength", "start", "end"; region: "prompt";
        reference: "weight")}."""
        out = []
        for layer in self.layers:
            if layer.kind in ("control", "region", "reference") and layer.visible:
                rgba = layer.pil()
                image = Image.new("RGB", rgba.size, (0, 0, 0))
                image.paste(rgba, mask=rgba.getchannel("A"))
                out.append({"kind": layer.kind, "name": layer.name, "image": image, "mask": layer.alpha_pil(),
                            "opacity": layer.opacity, **layer.props})
        return out

    def _set_mask(self, mask: np.ndarray) -> None:
        h, w = mask.shape
        self.mask_qimage, self._mask_array = new_layer(w, h, QImage.Format.Format_Indexed8)
        if w and h:
            self._mask[...] = mask
        self._update_colour_table(emit=False)

    def _update_colour_table(self, emit: bool = True) -> None:
        c = self.brush.overlay_colour
        a = self.brush.overlay_opacity
        if not self.mask_qimage.isNull():
            self.mask_qimage.setColorTable([qRgba(c.red(), c.green(), c.blue(), int(round(i * a))) for i in range(256)])
        if emit and self.has_image:
            self.mask_changed.emit((0, 0, self.width, self.height))

    def notify(self, key: str, rect: Rect) -> None:
        """Pixels of ``key`` ("mask" or a layer's key) changed inside ``rect``."""
        if key == "mask":
            self.mask_changed.emit(rect)
            return
        layer = self.layer(key)
        if layer is not None:
            layer.revision += 1
        self.layer_pixels_changed.emit(key, rect)
        if layer is not None and layer.kind == "image":
            self._invalidate()
            self.image_changed.emit(rect)

    # -- whole-document changes ---------------------------------------------------------------

    def set_image(self, image: Image.Image, source: str, mask: Image.Image | None = None) -> None:
        """A new canvas from a PIL image (and optional mask): one "Background" layer. Undoable."""
        arr = rgb_to_array(image)  # opaque RGB32 bytes are the same as opaque premultiplied ARGB
        m = np.zeros(arr.shape[:2], np.uint8) if mask is None else np.array(mask.convert("L"), np.uint8)
        if m.shape != arr.shape[:2]:
            raise ValueError("the mask is not the image's size")
        self.set_document([Layer.from_array(arr, "Background")], m, source, f"Open {source}")

    def set_document(self, layers: list[Layer], mask: np.ndarray, source: str, text: str, active: str = "mask") -> None:
        """A new canvas made of ``layers`` (bottom first, all one size) and ``mask``. Undoable."""
        if any((layer.height, layer.width) != mask.shape for layer in layers):
            raise ValueError("the layers are not all the canvas's size")
        if not any(layer.kind == "image" for layer in layers):
            raise ValueError("a canvas needs at least one image layer")
        self.discard_candidates()
        self.undo_stack.push(ReplaceCommand(self, DocState(list(layers), mask, source, active), text))

    def swap_state(self, state: DocState) -> DocState:
        old = DocState(self.layers, self._mask.copy(), self.source, self.active_key)
        self.layers, self.source = list(state.layers), state.source
        self.active_key = state.active if state.active == "mask" or self.layer(state.active) else "mask"
        self._set_mask(state.mask)
        self._invalidate()
        self.document_replaced.emit()
        self.layers_changed.emit()
        return old

    def extend(self, left: int, top: int, right: int, bottom: int, fill: str = "blur") -> None:
        """Outpaint: grow the canvas; the new area joins the mask, pre-filled for a good start."""
        if not self.has_image or not (left or top or right or bottom):
            return
        self.discard_candidates()
        self.undo_stack.push(ExtendCommand(self, (left, top, right, bottom), fill))

    def extend_in_place(self, amounts: tuple[int, int, int, int], fill: str) -> None:
        """The bottom image layer gets the pre-filled new area (from the composite), the others transparent."""
        l, t, r, b = amounts
        image, new_area = imageprep.extend_canvas(self.image_pil(), l, t, r, b, fill=fill)
        mask = np.array(new_area, np.uint8)
        mask[t:t + self.height, l:l + self.width] = self._mask
        w, h = image.size
        base = next((layer for layer in self.layers if layer.kind == "image"), None)
        for layer in self.layers:
            grown = Layer.blank(w, h, layer.name, layer.kind)
            if layer is base:
                grown.array[...] = rgb_to_array(image)
            grown.array[t:t + self.height, l:l + self.width] = layer.array
            layer.qimage, layer.array = grown.qimage, grown.array
            layer.revision += 1
            _shift_pose(layer, l, t)
        self._set_mask(mask)
        self._invalidate()
        self.document_replaced.emit()

    def crop_in_place(self, amounts: tuple[int, int, int, int]) -> None:
        l, t, r, b = amounts
        h, w = self.height - t - b, self.width - l - r
        for layer in self.layers:
            cropped = Layer.from_array(layer.array[t:t + h, l:l + w], layer.name, layer.kind)
            layer.qimage, layer.array = cropped.qimage, cropped.array
            layer.revision += 1
            _shift_pose(layer, -l, -t)
        self._set_mask(self._mask[t:t + h, l:l + w].copy())
        self._invalidate()
        self.document_replaced.emit()

    # -- layer operations (each one undo step) --------------------------------------------------

    def swap_stack(self, layers: list[Layer], active: str) -> tuple[list[Layer], str]:
        old = self.layers, self.active_key
        self.layers = list(layers)
        self.active_key = active if active == "mask" or self.layer(active) else "mask"
        self._invalidate()
        self.layers_changed.emit()
        self.image_changed.emit((0, 0, self.width, self.height))
        return old

    def _push_stack(self, layers: list[Layer], active: str, text: str) -> None:
        self.discard_candidates()
        self.undo_stack.push(StackCommand(self, layers, active, text))

    def add_layer(self, kind: str = "image", name: str | None = None, **props: Any) -> Layer | None:
        """A new transparent layer above the active one (at the top while the mask is active); it becomes active."""
        if kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {kind!r}")
        if not self.has_image:
            return None
        n = sum(layer.kind == kind for layer in self.layers) + 1
        layer = Layer.blank(self.width, self.height, name or f"{KIND_LABELS[kind]} {n}", kind,
                            opacity=0.6 if kind == "region" else 1.0, props=props)
        at = self.index_of(self.active_key)
        layers = list(self.layers)
        layers.insert(at + 1 if at >= 0 else len(layers), layer)
        self._push_stack(layers, layer.key, f"Add {layer.name}")
        return layer

    def add_picture_layer(self, picture: Image.Image, kind: str, name: str, **props: Any) -> Layer | None:
        """A new layer of ``kind`` above the active one holding ``picture`` fitted inside the canvas
        (kept in proportion, centred; transparent around it); it becomes active. One undo step."""
        if kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {kind!r}")
        if not self.has_image:
            return None
        rgba = picture.convert("RGBA")
        scale = min(self.width / rgba.width, self.height / rgba.height)
        size = (max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale)))
        board = Image.new("RGBA", (self.width, self.height), (0, 0, 0, 0))
        board.paste(rgba.resize(size, Image.Resampling.LANCZOS), ((self.width - size[0]) // 2, (self.height - size[1]) // 2))
        layer = Layer.from_pil(board, name, kind, props=props)
        at = self.index_of(self.active_key)
        layers = list(self.layers)
        layers.insert(at + 1 if at >= 0 else len(layers), layer)
        self._push_stack(layers, layer.key, f"Add {layer.name}")
        return layer

    def add_pixel_layer(self, pixels: np.ndarray, name: str, where: np.ndarray | None = None) -> Layer | None:
        """A new image layer at the top of the stack holding ``pixels`` ((h, w, 4) RGB32 bytes, the
        canvas's size), opaque where ``where`` is True (everywhere when None), transparent elsewhere.
        The active layer stays the same. One undo step."""
        if not self.has_image or pixels.shape != (self.height, self.width, 4):
            return None
        layer = Layer.blank(self.width, self.height, name, "image")
        cover = np.ones(pixels.shape[:2], bool) if where is None else where
        np.copyto(layer.array, pixels, where=cover[..., None])
        layer.array[..., _A][cover] = 255  # opaque RGB32 bytes are the same as opaque premultiplied ARGB
        self._push_stack([*self.layers, layer], self.active_key, f"Add {name}")
        return layer

    def delete_layer(self, key: str) -> bool:
        """Delete a layer (not the last image layer: the canvas needs one). False if not deleted."""
        layer = self.layer(key)
        if layer is None or (layer.kind == "image" and len(self.image_layers()) == 1):
            return False
        i = self.index_of(key)
        layers = [other for other in self.layers if other is not layer]
        active = self.active_key
        if active == key:
            active = layers[max(0, i - 1)].key if layers else "mask"
        self._push_stack(layers, active, f"Delete {layer.name}")
        return True

    def move_layer(self, key: str, to: int) -> bool:
        """Move a layer to index ``to`` of the stack (0 = bottom)."""
        i = self.index_of(key)
        to = max(0, min(len(self.layers) - 1, to))
        if i < 0 or i == to:
            return False
        layers = list(self.layers)
        layer = layers.pop(i)
        layers.insert(to, layer)
        self._push_stack(layers, self.active_key, f"Move {layer.name} {'up' if to > i else 'down'}")
        return True

    def duplicate_layer(self, key: str) -> Layer | None:
        layer = self.layer(key)
        if layer is None:
            return None
        copy = Layer.from_array(layer.array, f"{layer.name} copy", layer.kind, visible=layer.visible,
                                opacity=layer.opacity, props=dict(layer.props))
        layers = list(self.layers)
        layers.insert(self.index_of(key) + 1, copy)
        self._push_stack(layers, copy.key, f"Duplicate {layer.name}")
        return copy

    def set_layer_attributes(self, layer: Layer, attrs: dict[str, Any]) -> None:
        had_pose = layer.props.get("pose")
        layer.set_attributes(attrs)
        if layer.kind == "image":
            self._invalidate()
            self.image_changed.emit((0, 0, self.width, self.height))
        self.layers_changed.emit()
        if had_pose != layer.props.get("pose"):
            self.pose_changed.emit(layer.key)

    def _edit_attrs(self, key: str, text: str, merge: str = "", **changes: Any) -> bool:
        layer = self.layer(key)
        if layer is None:
            return False
        before = layer.attributes()
        after = {**before, **changes}
        if after == before:
            return False
        self.discard_candidates()
        self.undo_stack.push(LayerAttrsCommand(self, layer, before, after, text, merge))
        return True

    def rename_layer(self, key: str, name: str) -> bool:
        name = " ".join(str(name).split())[:200]
        return bool(name) and self._edit_attrs(key, f"Rename to {name}", name=name)

    def set_layer_visible(self, key: str, visible: bool) -> bool:
        layer = self.layer(key)
        return layer is not None and self._edit_attrs(key, f"{'Show' if visible else 'Hide'} {layer.name}",
                                                      visible=bool(visible))

    def set_layer_opacity(self, key: str, opacity: float) -> bool:
        layer = self.layer(key)
        value = float(max(0.0, min(1.0, opacity)))
        return layer is not None and self._edit_attrs(key, f"Opacity of {layer.name}", "opacity", opacity=value)

    def set_layer_props(self, key: str, **props: Any) -> bool:
        """Control (control, strength, start, end) or region (prompt) properties; ValueError if unusable."""
        layer = self.layer(key)
        if layer is None or layer.kind == "image":
            return False
        merged = clean_props(layer.kind, {**layer.props, **props})
        field = next(iter(props), "props")
        return self._edit_attrs(key, f"{field.capitalize()} of {layer.name}", f"props:{field}", props=merged)

    # -- control images and poses (each one undo step) -------------------------------------------

    def _commit_layer_edit(self, layer: Layer, rect: Rect | None, before: np.ndarray | None,
                           attrs: dict[str, Any], text: str) -> bool:
        """One undo step for a change already made to ``layer``: its pixels inside ``rect`` (``before``:
        what they were) and its attributes (``attrs``: what they were)."""
        after = layer.attributes()
        if rect is None and after == attrs:
            return False
        self.discard_candidates()
        self.undo_stack.beginMacro(text)
        if rect is not None:
            self.undo_stack.push(PatchCommand(self, layer.key, rect, before, text))
        if after != attrs:
            self.undo_stack.push(LayerAttrsCommand(self, layer, attrs, after, text))
        self.undo_stack.endMacro()
        return True

    def set_control_image(self, key: str, image: Image.Image, made_from: str, control: str | None = None) -> bool:
        """Make control layer ``key``'s pixels ``image`` (RGB, the canvas's size: a preprocessor's output,
        opaque), marked as made by ``made_from`` so it is given to the control model as it is; with
        ``control`` its kind changes too. One undo step; False if nothing was changed."""
        layer = self.layer(key)
        if layer is None or layer.kind != "control" or image.size != (self.width, self.height):
            return False
        attrs = layer.attributes()
        new = rgb_to_array(image)  # opaque RGB32 bytes are the same as opaque premultiplied ARGB
        rect = mask_ops.bbox(np.any(new != layer.array, axis=2))
        before = None
        if rect is not None:
            l, t, r, b = rect
            before = layer.array[t:b, l:r].copy()
            layer.array[t:b, l:r] = new[t:b, l:r]
        changes = {"made_from": made_from, **({"control": control} if control else {})}
        layer.props = clean_props("control", {**layer.props, **changes})
        if rect is not None:
            self.notify(key, rect)
        return self._commit_layer_edit(layer, rect, before, attrs, f"Make {layer.name} from the picture")

    def _draw_pose(self, layer: Layer, people: list, rect: Rect | None) -> None:
        """Set ``layer``'s figures and redraw its pixels inside ``rect`` (what the change touched): the
        figures as OpenPose draws them, transparent around them."""
        from engine.preprocess import draw_pose

        layer.props = clean_props("control", {**layer.props, "pose": people})
        if rect is not None:
            l, t, r, b = rect
            drawn = rgb_to_array(draw_pose(layer.props["pose"], (self.width, self.height), rect))
            # The figures over transparency, so the picture shows round them; over black (what the
            # control model is given, CanvasDocument.guides) it is the OpenPose image exactly.
            drawn[..., _A] = np.where(drawn[..., [_R, _G, _B]].any(axis=2), 255, 0)
            layer.array[t:b, l:r] = drawn
            self.notify(layer.key, rect)
        self.pose_changed.emit(layer.key)

    def _pose_rect(self, *figures: list) -> Rect | None:
        from engine.preprocess import pose_margin

        margin = pose_margin((self.width, self.height))
        rect = None
        for figure in figures:
            rect = mask_ops.union(rect, bounds(figure, margin, self.width, self.height))
        return rect

    def _set_pose(self, layer: Layer, people: list, touched: list, text: str) -> bool:
        attrs = layer.attributes()
        rect = self._pose_rect(*touched)
        before = None
        if rect is not None:
            l, t, r, b = rect
            before = layer.array[t:b, l:r].copy()
        self._draw_pose(layer, people, rect)
        return self._commit_layer_edit(layer, rect, before, attrs, text)

    def add_pose_figure(self, key: str) -> bool:
        """A standing figure on pose layer ``key`` (its 18 joints to drag into the pose). One undo step."""
        layer = self.layer(key)
        people = pose_of(layer)
        if not is_pose_layer(layer) or not self.has_image or len(people) >= MAX_PEOPLE:
            return False
        figure = standing_figure(self.width, self.height, len(people))
        return self._set_pose(layer, [*people, figure], [figure], f"Add a figure to {layer.name}")

    def remove_pose_figure(self, key: str, index: int = -1) -> bool:
        """Take figure ``index`` (the last added by default) off pose layer ``key``. One undo step."""
        layer = self.layer(key)
        people = pose_of(layer)
        if not people or not -len(people) <= index < len(people):
            return False
        gone = people.pop(index)
        return self._set_pose(layer, people, [gone], f"Remove a figure from {layer.name}")

    def remove_pose_joint(self, figure: int, joint: int) -> bool:
        """Hide one joint (and the limbs to it) of a figure of the active pose layer. One undo step."""
        from engine.preprocess import POSE_JOINTS

        layer = self.active_layer
        people = pose_of(layer)
        if not 0 <= figure < len(people) or people[figure][joint] is None:
            return False
        old = people[figure]
        people[figure] = [None if i == joint else p for i, p in enumerate(old)]
        return self._set_pose(layer, people, [old], f"Remove the {POSE_JOINTS[joint]} of {layer.name}")

    def add_pose_joint(self, x: float, y: float) -> bool:
        """Put back a hidden joint at (x, y): the first one missing (in OpenPose's order) of the figure
        nearest to that point on the active pose layer. One undo step; False when none is missing."""
        from engine.preprocess import POSE_JOINTS

        layer = self.active_layer
        people = pose_of(layer)
        missing = [(min((math.hypot(p[0] - x, p[1] - y) for p in person if p is not None), default=0.0), f)
                   for f, person in enumerate(people) if None in person]
        if not is_pose_layer(layer) or not layer.visible or not missing:
            return False
        f = min(missing)[1]
        old = people[f]
        j = old.index(None)
        point = [round(max(0.0, min(self.width - 1.0, x)), 2), round(max(0.0, min(self.height - 1.0, y)), 2)]
        people[f] = [point if i == j else p for i, p in enumerate(old)]
        return self._set_pose(layer, people, [old, people[f]], f"Put back the {POSE_JOINTS[j]} of {layer.name}")

    def pose_joint_at(self, x: float, y: float, radius: float) -> tuple[int, int] | None:
        """The (figure, joint) of the active pose layer under (x, y), within ``radius`` pixels."""
        layer = self.active_layer
        if not is_pose_layer(layer) or not layer.visible:
            return None
        return joint_at(pose_of(layer), x, y, radius)

    def begin_pose_drag(self, figure: int, joint: int) -> bool:
        """Start dragging a joint of the active pose layer (the drag is one undo step)."""
        layer = self.active_layer
        people = pose_of(layer)
        if not 0 <= figure < len(people) or not 0 <= joint < len(people[figure]) or people[figure][joint] is None:
            return False
        self._pose_drag = {"layer": layer, "figure": figure, "joint": joint, "attrs": layer.attributes(),
                           "before": layer.array.copy(), "rect": None}
        return True

    @property
    def pose_dragging(self) -> bool:
        return self._pose_drag is not None

    def pose_drag_to(self, x: float, y: float) -> None:
        """Move the dragged joint to (x, y) (kept inside the canvas) and redraw what changed."""
        drag = self._pose_drag
        if drag is None or self.layer(drag["layer"].key) is not drag["layer"]:
            return
        layer, f, j = drag["layer"], drag["figure"], drag["joint"]
        people = pose_of(layer)
        old = people[f]
        point = [round(max(0.0, min(self.width - 1.0, x)), 2), round(max(0.0, min(self.height - 1.0, y)), 2)]
        if old[j] == point:
            return
        people[f] = [point if i == j else p for i, p in enumerate(old)]
        rect = self._pose_rect(old, people[f])
        self._draw_pose(layer, people, rect)
        drag["rect"] = mask_ops.union(drag["rect"], rect)

    def end_pose_drag(self) -> bool:
        from engine.preprocess import POSE_JOINTS

        drag, self._pose_drag = self._pose_drag, None
        if drag is None:
            return False
        layer, rect = drag["layer"], drag["rect"]
        before = None
        if rect is not None:
            l, t, r, b = rect
            before = drag["before"][t:b, l:r].copy()
        return self._commit_layer_edit(layer, rect, before, drag["attrs"],
                                       f"Move the {POSE_JOINTS[drag['joint']]} of {layer.name}")

    # -- strokes ------------------------------------------------------------------------------

    def _target(self) -> tuple[str, np.ndarray] | None:
        """The active layer's key and pixels (or the mask's), when there is something to paint on."""
        if not self.has_image:
            return None
        if self.active_key == "mask":
            return "mask", self._mask
        layer = self.active_layer
        return (layer.key, layer.array) if layer is not None else None

    def begin_stroke(self, x: float, y: float, pressure: float = 1.0) -> None:
        """Start a brush or eraser stroke at image coordinates (x, y) with the current settings,
        on the active layer (the mask, or a layer's pixels in the brush colour)."""
        target = self._target()
        if target is None:
            return
        key, arr = target
        b = self.brush
        erase = b.tool == "eraser"
        if key == "mask":
            self._stroke = mask_ops.StrokeBuffer.start(arr, erase, b.opacity)
        else:
            self._stroke = mask_ops.PaintStroke.start(arr, erase, b.opacity)
            self._stroke.colour = colour_bytes(b.colour)
        self._stroke_key = key
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
            self.notify(self._stroke_key, dirty)

    def _dab(self, x: float, y: float, pressure: float, emit: bool = True) -> Rect | None:
        rect, cover = mask_ops.dab(self.brush.size * max(0.05, min(1.0, pressure)), self.brush.hardness, x, y)
        changed = self._stroke.apply_dab(self.layer_array(self._stroke_key), rect, cover)
        if emit and changed is not None:
            self.notify(self._stroke_key, changed)
        return changed

    def end_stroke(self) -> None:
        stroke, self._stroke, self._last = self._stroke, None, None
        if stroke is None or stroke.dirty is None:
            return
        key = self._stroke_key
        pieces = stroke.changed_tiles(self.layer_array(key))
        if not pieces:
            return
        if key == "mask":
            text = "Erase" if stroke.erase else "Paint mask"
        else:
            text = f"{'Erase on' if stroke.erase else 'Paint on'} {self.layer(key).name}"
        self.undo_stack.push(PatchCommand(self, key, stroke.dirty, None, text, pieces))

    @property
    def stroking(self) -> bool:
        return self._stroke is not None

    # -- fills and the colour picker ------------------------------------------------------------

    def _edit_pixels(self, key: str, rect: Rect | None, new: np.ndarray, text: str) -> None:
        if rect is None:
            return
        arr = self.layer_array(key)
        l, t, r, b = rect
        if np.array_equal(new, arr[t:b, l:r]):
            return
        before = arr[t:b, l:r].copy()
        arr[t:b, l:r] = new
        self.notify(key, rect)
        self.undo_stack.push(PatchCommand(self, key, rect, before, text))

    def _edit_mask(self, rect: Rect | None, new: np.ndarray, text: str) -> None:
        self._edit_pixels("mask", rect, new, text)

    def _cover_fill(self, rect: Rect, cover: np.ndarray, erase: bool, what: str) -> None:
        """Lay ``cover`` (float 0..1 on ``rect``) at the brush opacity on the active layer or the mask."""
        target = self._target()
        if target is None:
            return
        key, arr = target
        l, t, r, b = rect
        new = arr[t:b, l:r].copy()
        if key == "mask":
            mask_ops.fill(new, (0, 0, r - l, b - t), cover, self.brush.opacity, erase)
            self._edit_mask(rect, new, f"{'Erase' if erase else 'Fill'} {what}")
        else:
            mask_ops.paint(new, new, cover * self.brush.opacity, colour_bytes(self.brush.colour), erase)
            self._edit_pixels(key, rect, new, f"{'Erase' if erase else 'Fill'} {what} on {self.layer(key).name}")

    def fill_polygon(self, points: list[tuple[float, float]], erase: bool = False) -> None:
        """Rectangle and lasso: fill (or with ``erase`` clear) the polygon at the brush opacity, on the
        active layer (in the brush colour) or the mask."""
        found = mask_ops.polygon_coverage(points, self.width, self.height) if self.has_image else None
        if found is not None:
            self._cover_fill(*found, erase, "area")

    def fill_rect(self, rect: Rect, erase: bool = False) -> None:
        l, t, r, b = rect
        self.fill_polygon([(l, t), (r - 1, t), (r - 1, b - 1), (l, b - 1)], erase)

    def flood_fill(self, x: float, y: float, erase: bool = False, tolerance: int = 24) -> None:
        """The fill tool: the connected area of similar pixels around (x, y) on the active layer (or
        mask) gets the brush colour (or the mask) at the brush opacity; ``erase`` clears it instead."""
        target = self._target()
        if target is None:
            return
        region = flood_region(target[1], int(x), int(y), tolerance)
        rect = mask_ops.bbox(region) if region is not None else None
        if rect is not None:
            l, t, r, b = rect
            self._cover_fill(rect, region[t:b, l:r].astype(np.float32), erase, "connected area")

    def pick_colour(self, x: float, y: float) -> QColor | None:
        """The colour picker: the brush takes the colour of the image (the visible image layers) at (x, y)."""
        ix, iy = int(x), int(y)
        if not (self.has_image and 0 <= ix < self.width and 0 <= iy < self.height):
            return None
        px = self.image_array[iy, ix]
        colour = QColor(int(px[_R]), int(px[_G]), int(px[_B]))
        self.brush.set_colour(colour)
        return colour

    # -- mask operations ----------------------------------------------------------------------

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
        """Show generated images over the canvas. ``source`` is the composite the job started from.

        Returns False (and shows nothing) when the canvas no longer has that size.
        """
        if source.shape != (self.height, self.width, 4):
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
        """Make the shown candidate the canvas (undoable): the pixels it changed are written, opaque,
        into the top visible image layer."""
        cand = self.current_candidate()
        if cand is None:
            return None
        new = qimage_to_array(cand.image)
        source = self._candidate_source
        changed = np.any(new[..., :3] != source[..., :3], axis=2)
        rect = mask_ops.bbox(changed)
        self.discard_candidates()
        target = self.paint_target()
        # One undo step: the result goes in and the mask that made it is cleared, so the next
        # inpaint or outpaint does not silently regenerate this area again.
        self.undo_stack.beginMacro("Accept result")
        if rect is not None and target is not None:
            l, t, r, b = rect
            before = target.array[t:b, l:r].copy()
            np.copyto(target.array[t:b, l:r], new[t:b, l:r], where=changed[t:b, l:r, None])
            target.array[t:b, l:r, _A][changed[t:b, l:r]] = 255
            self.notify(target.key, rect)
            self.undo_stack.push(PatchCommand(self, target.key, rect, before, "Accept result"))
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


def _shift_pose(layer: Layer, dx: int, dy: int) -> None:
    """A pose layer's figures follow its pixels when the canvas grows or shrinks on the left or top."""
    if layer.props.get("pose") and (dx or dy):
        moved = [[None if p is None else [round(p[0] + dx, 2), round(p[1] + dy, 2)] for p in person]
                 for person in layer.props["pose"]]
        layer.props = {**layer.props, "pose": moved}

"""The canvas's layers: pixel layers (image, control, region) in premultiplied ARGB QImages.

Each layer's pixels live in a QImage that owns them (Format_ARGB32_Premultiplied: what Qt draws
fastest with transparency), edited through a numpy view of that memory. Byte order in memory is the
native-endian 0xAARRGGBB word, so on little-endian machines a pixel is B, G, R, A. Painting in
premultiplied form is simple: brushing colour C at coverage c is ``p + (C - p) * c`` on all four
channels, erasing is ``p * (1 - c)``.

Kinds: "image" (part of the picture: generation uses the visible image layers' composite),
"control" (a ControlNet input: its pixels plus the control kind, strength, start and end) and
"region" (an area with its own prompt: the painted alpha is the area) and "reference" (a reference
image for an IP-Adapter: its pixels plus a weight). Control, region and reference layers are shown on
the canvas like any layer but never enter the composite given to the engine.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPainter

from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path

LAYER_KINDS = ("image", "control", "region", "reference")
CONTROL_KINDS = ("scribble", "lineart", "canny", "depth", "pose", "tile", "inpaint")
KIND_LABELS = {"image": "Image", "control": "Control", "region": "Region", "reference": "Reference"}
PREMUL = QImage.Format.Format_ARGB32_Premultiplied
# Byte positions of R, G, B, A in a native-endian 0xAARRGGBB pixel.
R, G, B, A = (2, 1, 0, 3) if sys.byteorder == "little" else (1, 2, 3, 0)

_ids = itertools.count(1)


def default_props(kind: str) -> dict[str, Any]:
    if kind == "control":
        return {"control": "scribble", "strength": 1.0, "start": 0.0, "end": 1.0}
    if kind == "region":
        return {"prompt": ""}
    if kind == "reference":
        return {"weight": 1.0}
    return {}


def clean_props(kind: str, props: dict[str, Any]) -> dict[str, Any]:
    """``props`` for a layer of ``kind``, every value checked and clamped (ValueError if unusable)."""
    out = default_props(kind)
    if kind == "control":
        control = str(props.get("control", out["control"]))
        if control not in CONTROL_KINDS:
            raise ValueError(f"unknown control kind {control!r} (one of {', '.join(CONTROL_KINDS)})")
        out["control"] = control
        for key, lo, hi in (("strength", 0.0, 2.0), ("start", 0.0, 1.0), ("end", 0.0, 1.0)):
            value = float(props.get(key, out[key]))
            if value != value:  # NaN
                raise ValueError(f"{key} is not a number")
            out[key] = max(lo, min(hi, value))
        if out["start"] > out["end"]:
            out["start"], out["end"] = out["end"], out["start"]
        made = props.get("made_from")
        if made:  # the pixels are a preprocessor's output (Make from picture): the control image as it is
            if made not in PICTURE_PREPROCESSORS:
                raise ValueError(f"unknown preprocessor {made!r}")
            out["made_from"] = str(made)
        if props.get("pose") is not None:
            out["pose"] = clean_pose(props["pose"])
    elif kind == "region":
        out["prompt"] = str(props.get("prompt", ""))[:2000]
    elif kind == "reference":
        value = float(props.get("weight", out["weight"]))
        if value != value:  # NaN
            raise ValueError("weight is not a number")
        out["weight"] = max(0.0, min(2.0, value))
    return out


# What "Make from picture" offers: the preprocessors that turn the picture alone into a control image.
PICTURE_PREPROCESSORS = ("canny", "lineart", "depth", "scribble", "tile")
POSE_POINTS = 18  # OpenPose's COCO body keypoints (engine.preprocess.POSE_JOINTS)
MAX_PEOPLE = 16


def clean_pose(people: Any) -> list[list[list[float] | None]]:
    """A pose layer's figures: a list of people, each 18 keypoints [x, y] (image pixels) or None (not
    shown). ValueError when it is not that shape or holds something that is not a finite number."""
    if not isinstance(people, (list, tuple)) or len(people) > MAX_PEOPLE:
        raise ValueError("a pose is a list of at most 16 figures")
    out = []
    for person in people:
        if not isinstance(person, (list, tuple)) or len(person) != POSE_POINTS:
            raise ValueError(f"a figure has {POSE_POINTS} keypoints")
        points: list[list[float] | None] = []
        for point in person:
            if point is None:
                points.append(None)
                continue
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise ValueError("a keypoint is [x, y]")
            x, y = (float(v) for v in point)
            if not (abs(x) < 1e6 and abs(y) < 1e6):  # also false for NaN
                raise ValueError("a keypoint is not a usable number")
            points.append([round(x, 2), round(y, 2)])
        out.append(points)
    return out


def new_pixels(width: int, height: int) -> tuple[QImage, np.ndarray]:
    """A transparent premultiplied ARGB QImage that owns its pixels, and a writable (h, w, 4) view."""
    image = QImage(width, height, PREMUL)
    if image.isNull() and width and height:
        raise MemoryError(f"not enough memory for a {width}x{height} layer")
    if not width or not height:
        return image, np.zeros((height, width, 4), np.uint8)
    bpl = image.bytesPerLine()
    raw = np.frombuffer(image.bits(), np.uint8, count=bpl * height).reshape(height, bpl)
    view = raw[:, : width * 4].reshape(height, width, 4)
    view[...] = 0
    return image, view


@dataclass(eq=False)
class Layer:
    """One layer: its pixels, name, kind, visibility, opacity and (control/region) properties."""

    name: str
    kind: str
    qimage: QImage
    array: np.ndarray  # (h, w, 4) view of qimage's memory, premultiplied, native byte order
    visible: bool = True
    opacity: float = 1.0
    props: dict[str, Any] = field(default_factory=dict)
    key: str = field(default_factory=lambda: f"L{next(_ids)}")
    revision: int = 0  # bumps on every change of the pixels (the autosave re-encodes only changed layers)

    @classmethod
    def blank(cls, width: int, height: int, name: str, kind: str = "image", **kw: Any) -> Layer:
        if kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {kind!r}")
        image, view = new_pixels(width, height)
        layer = cls(name, kind, image, view, **kw)
        layer.props = clean_props(kind, layer.props)
        return layer

    @classmethod
    def from_array(cls, arr: np.ndarray, name: str, kind: str = "image", **kw: Any) -> Layer:
        """A layer holding a copy of ``arr`` ((h, w, 4) premultiplied, native order)."""
        layer = cls.blank(arr.shape[1], arr.shape[0], name, kind, **kw)
        layer.array[...] = arr
        return layer

    @classmethod
    def from_pil(cls, image: Image.Image, name: str, kind: str = "image", **kw: Any) -> Layer:
        return cls.from_array(pil_to_premul(image), name, kind, **kw)

    @property
    def width(self) -> int:
        return self.qimage.width()

    @property
    def height(self) -> int:
        return self.qimage.height()

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def attributes(self) -> dict[str, Any]:
        """What a property edit can change (undo swaps these)."""
        return {"name": self.name, "visible": self.visible, "opacity": self.opacity, "props": dict(self.props)}

    def set_attributes(self, attrs: dict[str, Any]) -> None:
        self.name = str(attrs["name"])
        self.visible = bool(attrs["visible"])
        self.opacity = float(max(0.0, min(1.0, attrs["opacity"])))
        self.props = dict(attrs["props"])

    def pil(self) -> Image.Image:
        """Straight (not premultiplied) RGBA."""
        return premul_to_pil(self.array)

    def alpha_pil(self) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(self.array[..., A]), "L")


def pil_to_premul(image: Image.Image) -> np.ndarray:
    """A PIL image as an (h, w, 4) premultiplied native-order array (Qt's own premultiplication)."""
    rgba = np.ascontiguousarray(np.asarray(image.convert("RGBA")))
    h, w = rgba.shape[:2]
    if not w or not h:
        return np.zeros((h, w, 4), np.uint8)
    q = QImage(rgba.data, w, h, w * 4, QImage.Format.Format_RGBA8888).convertToFormat(PREMUL)
    view = np.frombuffer(q.constBits(), np.uint8, count=q.bytesPerLine() * h).reshape(h, q.bytesPerLine())
    return view[:, : w * 4].reshape(h, w, 4).copy()


def premul_to_pil(arr: np.ndarray) -> Image.Image:
    """An (h, w, 4) premultiplied native-order array as straight RGBA (Qt's own unpremultiplication)."""
    h, w = arr.shape[:2]
    if not w or not h:
        return Image.new("RGBA", (w, h))
    src = np.ascontiguousarray(arr)
    q = QImage(src.data, w, h, w * 4, PREMUL).convertToFormat(QImage.Format.Format_RGBA8888)
    view = np.frombuffer(q.constBits(), np.uint8, count=q.bytesPerLine() * h).reshape(h, q.bytesPerLine())
    return Image.fromarray(view[:, : w * 4].reshape(h, w, 4).copy(), "RGBA")


def colour_bytes(colour: QColor) -> np.ndarray:
    """An opaque colour as the four bytes of a premultiplied pixel (float32, for blending)."""
    out = np.zeros(4, np.float32)
    out[R], out[G], out[B], out[A] = colour.red(), colour.green(), colour.blue(), 255
    return out


def compose(target: QImage, layers: list[Layer], rect: QRect | None = None, background: QColor | None = None) -> None:
    """Draw the visible ``layers`` (bottom first) over ``target`` inside ``rect`` (all of it if None),
    after filling that rect with ``background`` (transparent if None)."""
    if target.isNull():
        return
    rect = target.rect() if rect is None else rect.intersected(target.rect())
    if rect.isEmpty():
        return
    p = QPainter(target)
    p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
    p.fillRect(rect, background if background is not None else QColor(0, 0, 0, 0))
    p.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
    for layer in layers:
        if layer.visible and layer.opacity > 0:
            p.setOpacity(layer.opacity)
            p.drawImage(rect, layer.qimage, rect)
    p.end()


def flood_region(arr: np.ndarray, x: int, y: int, tolerance: int = 24) -> np.ndarray | None:
    """The pixels connected to (x, y) (4-neighbours) whose values are within ``tolerance`` of its own,
    as an (h, w) bool array; None when (x, y) is outside. Works on (h, w) and (h, w, c) arrays.

    Runs of similar pixels are found row by row with numpy, then joined across rows: fast for the
    areas a fill is used on (painted shapes, flat backgrounds)."""
    h, w = arr.shape[:2]
    if not (0 <= x < w and 0 <= y < h):
        return None
    seed = arr[y, x].astype(np.int16)
    diff = np.abs(arr.astype(np.int16) - seed)
    similar = (diff.max(axis=-1) if arr.ndim == 3 else diff) <= tolerance
    runs_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def runs(row: int) -> tuple[np.ndarray, np.ndarray]:
        if row not in runs_cache:
            line = np.concatenate(([False], similar[row], [False])).astype(np.int8)
            edges = np.flatnonzero(np.diff(line))
            runs_cache[row] = (edges[0::2], edges[1::2])  # starts, ends (exclusive)
        return runs_cache[row]

    out = np.zeros((h, w), bool)
    starts, ends = runs(y)
    i = int(np.searchsorted(ends, x, side="right"))
    stack = [(y, int(starts[i]), int(ends[i]))]
    seen: set[tuple[int, int]] = {(y, int(starts[i]))}
    while stack:
        row, s, e = stack.pop()
        out[row, s:e] = True
        for nr in (row - 1, row + 1):
            if 0 <= nr < h:
                ns, ne = runs(nr)
                lo = int(np.searchsorted(ne, s, side="right"))
                hi = int(np.searchsorted(ns, e, side="left"))
                for j in range(lo, hi):
                    k = (nr, int(ns[j]))
                    if k not in seen:
                        seen.add(k)
                        stack.append((nr, int(ns[j]), int(ne[j])))
    return out

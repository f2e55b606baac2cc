"""The canvas as an OpenRaster (.ora) file: layered, as Krita, GIMP and MyPaint read it.

An .ora is a zip: ``mimetype`` first and stored uncompressed ("image/openraster"), ``stack.xml``
(the layers, top first), ``data/*.png`` (one straight-alpha PNG per layer), ``mergedimage.png``
(the visible layers composited) and ``Thumbnails/thumbnail.png`` (at most 256 px a side). Easel's
own layer kinds and properties ride along as attributes in their own XML namespace
(``easel:kind``, ``easel:props``), which other programs ignore; the mask is a hidden layer of kind
"mask", so it is a plain grey layer elsewhere and the mask again in Easel.

Reading checks before it decodes: a file that is not a zip, has no or a broken stack.xml, claims
huge sizes, names files outside the archive or unsafe paths, or holds too much, is refused with one
line (``OraError``) and nothing on the canvas changes. Encoding and decoding need no Qt: they run on
the bridge's I/O thread; ``snapshot`` and ``to_layers`` (Qt premultiplication) run on the GUI thread.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

from PIL import Image

from engine.api import EaselError
from engine.images import check_size
from engine.outputs import write_bytes_atomic

if TYPE_CHECKING:
    from desktop_app.state.canvas import CanvasDocument
    from desktop_app.state.canvas_layers import Layer

MIMETYPE = "image/openraster"
NS = "urn:easel:openraster:1"
ET.register_namespace("easel", NS)
MAX_LAYERS = 64
AUTOSAVE_MERGED_SIDE = 512
MAX_XML_BYTES = 2_000_000
MAX_MEMBER_BYTES = 512_000_000  # one uncompressed member (a layer PNG)
MAX_TOTAL_BYTES = 4_000_000_000  # all layers' pixels once decoded (RGBA)


class OraError(EaselError, ValueError):
    """An .ora that cannot be read or written; the message is one plain line."""


@dataclass(eq=False)
class OraLayer:
    name: str
    kind: str  # "image", "control", "region" or "mask"
    image: Image.Image  # straight RGBA, the canvas size (a mask: L)
    visible: bool = True
    opacity: float = 1.0
    props: dict[str, Any] = field(default_factory=dict)
    png: bytes | None = None  # already encoded (the autosave's cache): ``image`` is then unused
    cache_key: tuple[str, int] | None = None  # (layer key, revision): where to keep the encoded PNG


@dataclass
class OraDocument:
    width: int
    height: int
    layers: list[OraLayer]  # bottom first; no mask here
    mask: Image.Image | None = None  # L
    active: int = -1  # index into layers of the active one; -1: the mask
    flat: Any = None  # the merged image made already (premultiplied array), else composited when encoded
    png_cache: dict[tuple[str, int], bytes] | None = None  # encoded layers, kept across autosaves


# -- from and to the canvas (GUI thread) ------------------------------------------------------

def snapshot(doc: CanvasDocument, raw: bool = False, png_cache: dict[tuple[str, int], bytes] | None = None) -> OraDocument:
    """A copy of the canvas's layers, mask and active layer, safe to encode on another thread.

    With ``raw`` (the autosave) the layers are plain copies of their premultiplied pixels and the
    merged image is a preview of at most 512 px composited here by Qt (the GUI thread pays little;
    only Easel reads its autosave, and it reads the layers), converted to straight RGBA when encoded; a layer whose pixels have not changed since the PNG kept in
    ``png_cache`` is not copied at all: its PNG is reused."""
    from desktop_app.state.canvas_layers import PREMUL

    cache = png_cache if png_cache is not None else {}
    layers = []
    for layer in doc.layers:
        key = (layer.key, layer.revision)
        if raw and key in cache:
            item = OraLayer(layer.name, layer.kind, None, layer.visible, layer.opacity, dict(layer.props), cache[key])
        else:
            item = OraLayer(layer.name, layer.kind, layer.array.copy() if raw else layer.pil(), layer.visible,
                            layer.opacity, dict(layer.props))
        item.cache_key = key
        layers.append(item)
    if png_cache is not None:  # forget the PNGs of layers that changed or went
        live = {item.cache_key for item in layers}
        for key in list(png_cache):
            if key not in live:
                del png_cache[key]
    flat = None
    if raw:  # the autosave's merged image is a preview (at most 512 px): full size would cost the GUI thread
        import numpy as np
        from PySide6.QtGui import QImage, QPainter

        scale = min(1.0, AUTOSAVE_MERGED_SIDE / max(doc.width, doc.height, 1))
        w, h = max(1, round(doc.width * scale)), max(1, round(doc.height * scale))
        image = QImage(w, h, PREMUL)
        image.fill(0)
        p = QPainter(image)
        p.scale(w / doc.width, h / doc.height)
        for layer in doc.layers:
            if layer.visible and layer.opacity > 0:
                p.setOpacity(layer.opacity)
                p.drawImage(0, 0, layer.qimage)
        p.end()
        view = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h).reshape(h, image.bytesPerLine())
        flat = view[:, : w * 4].reshape(h, w, 4).copy()
    return OraDocument(doc.width, doc.height, layers, doc.mask_pil() if doc.has_mask() else None,
                       doc.index_of(doc.active_key), flat, png_cache)


def to_layers(data: OraDocument) -> tuple[list[Layer], Any, str]:
    """Layers (premultiplied, the canvas size), the mask array and the active key for ``set_document``."""
    import numpy as np

    from desktop_app.state.canvas_layers import LAYER_KINDS, Layer, clean_props

    layers = []
    for item in data.layers:
        kind = item.kind if item.kind in LAYER_KINDS else "image"
        try:
            props = clean_props(kind, item.props)
        except (TypeError, ValueError):
            props = clean_props(kind, {})
        layers.append(Layer.from_pil(item.image, item.name, kind, visible=item.visible,
                                     opacity=max(0.0, min(1.0, item.opacity)), props=props))
    if not any(layer.kind == "image" for layer in layers):
        background = Layer.blank(data.width, data.height, "Background")
        background.array[...] = 255
        layers.insert(0, background)
    mask = (np.array(data.mask.convert("L"), np.uint8) if data.mask is not None
            else np.zeros((data.height, data.width), np.uint8))
    active = layers[data.active].key if 0 <= data.active < len(layers) and len(layers) == len(data.layers) else "mask"
    return layers, mask, active


# -- writing (any thread) ---------------------------------------------------------------------

def straighten(data: OraDocument) -> None:
    """Raw (premultiplied array) layers of a ``snapshot(raw=True)`` as straight RGBA images (QImage
    conversion: reentrant, fine off the GUI thread)."""
    from desktop_app.state.canvas_layers import premul_to_pil

    for layer in data.layers:
        if layer.png is None and not isinstance(layer.image, Image.Image):
            layer.image = premul_to_pil(layer.image)
    if data.flat is not None and not isinstance(data.flat, Image.Image):
        data.flat = premul_to_pil(data.flat)


def merged(data: OraDocument) -> Image.Image:
    """The visible layers composited (over transparency), as the stack renders."""
    out = Image.new("RGBA", (data.width, data.height), (0, 0, 0, 0))
    for layer in data.layers:
        if not layer.visible or layer.opacity <= 0:
            continue
        image = layer.image.convert("RGBA")
        if layer.opacity < 1:
            alpha = image.getchannel("A").point(lambda v, o=layer.opacity: round(v * o))
            image.putalpha(alpha)
        out.alpha_composite(image)
    return out


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # fast: layers are big, saves frequent
    return buf.getvalue()


def encode(data: OraDocument) -> bytes:
    """The .ora file's bytes."""
    straighten(data)
    root = ET.Element("image", {"version": "0.0.5", "w": str(data.width), "h": str(data.height)})
    stack = ET.SubElement(root, "stack")
    members: list[tuple[str, bytes]] = []
    entries = [(f"data/layer{i}.png", layer, i) for i, layer in enumerate(data.layers)]
    if data.mask is not None:
        entries.append(("data/mask.png", OraLayer("Mask", "mask", data.mask, False, 1.0), -2))
    for src, layer, index in reversed(entries):  # stack.xml lists the top layer first
        attrs = {"name": layer.name, "src": src, "x": "0", "y": "0", "opacity": f"{layer.opacity:.6g}",
                 "visibility": "visible" if layer.visible else "hidden", "composite-op": "svg:src-over",
                 f"{{{NS}}}kind": layer.kind}
        if layer.props:
            attrs[f"{{{NS}}}props"] = json.dumps(layer.props, sort_keys=True)
        if index == data.active:
            attrs[f"{{{NS}}}active"] = "true"
        ET.SubElement(stack, "layer", attrs)
        blob = layer.png if layer.png is not None else _png(layer.image)
        if data.png_cache is not None and layer.cache_key is not None:
            data.png_cache[layer.cache_key] = blob
        members.append((src, blob))
    flat = data.flat if data.flat is not None else merged(data)
    thumb = flat.copy()
    thumb.thumbnail((256, 256))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        zf.writestr("stack.xml", ET.tostring(root, encoding="utf-8", xml_declaration=True),
                    compress_type=zipfile.ZIP_DEFLATED)
        for name, blob in members:  # PNGs are compressed already
            zf.writestr(name, blob, compress_type=zipfile.ZIP_STORED)
        zf.writestr("mergedimage.png", _png(flat), compress_type=zipfile.ZIP_STORED)
        zf.writestr("Thumbnails/thumbnail.png", _png(thumb), compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def write(path: str | Path, data: OraDocument) -> Path:
    """Write ``data`` as an .ora atomically (a temp file renamed over ``path``: never half a file)."""
    return write_bytes_atomic(Path(path), encode(data))


# -- reading (any thread) ---------------------------------------------------------------------

def read(path: str | Path) -> OraDocument:
    """Decode an .ora into layers the canvas size. OraError (one line) for anything unusable."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return _read(zf)
    except zipfile.BadZipFile:
        raise OraError(f"{path.name} is not an OpenRaster file (it is not a zip archive)") from None
    except OSError as exc:
        raise OraError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    except OraError as exc:
        raise OraError(f"{path.name}: {exc}") from None


def _member(zf: zipfile.ZipFile, name: str, limit: int = MAX_MEMBER_BYTES) -> bytes:
    p = PurePosixPath(name)
    if not name or "\\" in name or p.is_absolute() or ".." in p.parts or ":" in name:
        raise OraError(f"it names an unsafe path ({name[:80]!r})")
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise OraError(f"it lists {name[:80]!r}, which is not in the archive") from None
    if info.file_size > limit:
        raise OraError(f"{name[:80]} is too big ({info.file_size / 1e6:.0f} MB uncompressed)")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        raise OraError(f"{name[:80]} is damaged ({exc})") from None


def _number(value: str | None, default: float, what: str) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise OraError(f"stack.xml has a bad {what} ({value[:40]!r})") from None
    if number != number or abs(number) > 1e7:
        raise OraError(f"stack.xml has a bad {what} ({value[:40]!r})")
    return number


def _read(zf: zipfile.ZipFile) -> OraDocument:
    names = zf.namelist()
    if len(names) > 4 * MAX_LAYERS + 16:
        raise OraError(f"it holds {len(names)} files, more than a canvas has")
    if names and names[0] == "mimetype" and zf.read("mimetype")[:64].strip() not in (b"image/openraster",):
        raise OraError("it is not an OpenRaster file (its mimetype says otherwise)")
    try:
        root = ET.fromstring(_member(zf, "stack.xml", MAX_XML_BYTES))
    except ET.ParseError as exc:
        raise OraError(f"its stack.xml is broken ({exc})") from None
    if root.tag != "image":
        raise OraError("its stack.xml does not describe an image")
    width = int(_number(root.get("w"), 0, "width"))
    height = int(_number(root.get("h"), 0, "height"))
    if width <= 0 or height <= 0:
        raise OraError("its stack.xml gives no image size")
    try:
        check_size((width, height), "canvas")
    except EaselError as exc:
        raise OraError(str(exc)) from None
    elements = [el for el in root.iter("layer")]  # nested stacks are flattened, in order
    if len(elements) > MAX_LAYERS + 1:
        raise OraError(f"it has {len(elements)} layers; a canvas holds at most {MAX_LAYERS}")
    if (len(elements) * width * height * 4) > MAX_TOTAL_BYTES:
        raise OraError(f"its {len(elements)} layers of {width}x{height} would need more memory than a canvas may use")
    layers: list[OraLayer] = []
    mask = None
    active = -1
    for el in reversed(elements):  # bottom first
        src = el.get("src") or ""
        blob = _member(zf, src)
        try:
            with Image.open(io.BytesIO(blob)) as im:
                check_size(im.size, "layer", PurePosixPath(src).name)
                im.load()
                image = im.convert("RGBA")
        except EaselError as exc:
            raise OraError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 (any decoder error is a damaged file: one line)
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OraError(f"{src[:80]} is not a readable image ({text})") from None
        x = int(_number(el.get("x"), 0, "layer position"))
        y = int(_number(el.get("y"), 0, "layer position"))
        placed = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        placed.paste(image, (x, y))
        kind = el.get(f"{{{NS}}}kind") or "image"
        props: dict[str, Any] = {}
        raw = el.get(f"{{{NS}}}props")
        if raw:
            try:
                loaded = json.loads(raw)
                props = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                props = {}
        opacity = max(0.0, min(1.0, _number(el.get("opacity"), 1.0, "opacity")))
        visible = (el.get("visibility") or "visible") != "hidden"
        name = (el.get("name") or f"Layer {len(layers) + 1}")[:200]
        if kind == "mask" and mask is None:
            mask = placed.convert("L")
            continue
        if el.get(f"{{{NS}}}active") == "true":
            active = len(layers)
        layers.append(OraLayer(name, kind, placed, visible, opacity, props))
    if not layers:
        raise OraError("it has no layers")
    return OraDocument(width, height, layers, mask, active)

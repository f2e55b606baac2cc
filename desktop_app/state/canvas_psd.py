"""The canvas as a layered Photoshop file (.psd), for Photoshop, Affinity Photo, Clip Studio Paint,
Photopea and Procreate, written with psd-tools.

The layers are the ones the .ora keeps (``canvas_ora.snapshot``), bottom first, each a pixel layer
with the canvas's size, its transparency, its visibility and opacity; Easel's own kinds keep their
pixels and say what they are in the layer's name ("Pose (control: pose)", "Sky (region: a blue sky)"),
and the mask is a hidden grey layer "Mask" on top. The merged image (what a viewer without layers
shows) is the visible layers composited, as the .ora's. Write-only: Easel reopens its own layers
from an .ora. Any thread (no Qt); written atomically (never half a file).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from desktop_app.state.canvas_ora import OraDocument, OraLayer, merged, straighten
from engine.api import EaselError
from engine.outputs import write_bytes_atomic

# Photoshop's documented limits: 30,000 px a side (PSD; larger needs PSB), layer names of 255 characters.
MAX_SIDE = 30_000
MAX_NAME = 255


class PsdError(EaselError, ValueError):
    """A canvas that cannot be written as a .psd; the message is one plain line."""


def layer_name(layer: OraLayer) -> str:
    """The layer's name, with Easel's kind and what it carries where the kind is Easel's own."""
    props = layer.props or {}
    prompt = str(props.get("prompt", "")).strip()
    suffix = {"control": f" (control: {props.get('control', '')})",
              "region": f" (region: {prompt})" if prompt else " (region)",
              "reference": " (reference)"}.get(layer.kind, "")
    return (layer.name + suffix)[:MAX_NAME]


def encode(data: OraDocument) -> bytes:
    """The .psd file's bytes."""
    import logging

    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer

    if max(data.width, data.height) > MAX_SIDE:
        raise PsdError(f"a Photoshop file holds at most {MAX_SIDE:,} px a side; this canvas is "
                       f"{data.width}×{data.height}: export it as .ora or PNG")
    straighten(data)
    flat = data.flat if isinstance(data.flat, Image.Image) else merged(data)
    psd = PSDImage.frompil(flat.convert("RGBA"))  # the merged image, as the file's composite
    layers = list(data.layers)
    if data.mask is not None:
        grey = Image.merge("RGBA", (data.mask, data.mask, data.mask, Image.new("L", data.mask.size, 255)))
        layers.append(OraLayer("Mask", "mask", grey, visible=False))
    for item in layers:
        layer = PixelLayer.frompil(item.image.convert("RGBA"), psd, "Layer", 0, 0)
        layer.name = layer_name(item)  # the setter writes the Unicode name too (and "?" where MacRoman has none)
        layer.visible = item.visible
        layer.opacity = max(0, min(255, round(item.opacity * 255)))
        psd.append(layer)
    buf = io.BytesIO()
    # psd-tools would recomposite the merged image itself with its [composite] extra (scipy, aggdraw); without
    # it, it says so in a warning and keeps the merged image given above, which is what is wanted.
    quiet = logging.getLogger("psd_tools.api.psd_image")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        psd.save(buf)
    finally:
        quiet.setLevel(level)
    return buf.getvalue()


def write(path: str | Path, data: OraDocument) -> Path:
    """Write ``data`` as a .psd atomically (a temp file renamed over ``path``)."""
    return write_bytes_atomic(Path(path), encode(data))

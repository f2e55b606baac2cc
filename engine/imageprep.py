"""Image preparation around a pipeline call: init/mask sizing, the "only masked region" crop, and
the feathered paste-back that keeps every pixel outside the mask bit-identical to the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from engine.api import GenerationRequest, ImageError


@dataclass(frozen=True)
class InpaintPlan:
    """Where to generate: ``box`` (left, top, right, bottom) of the source, resized to the request size."""

    source: Image.Image  # RGB, the full input image
    mask: Image.Image  # L, full size, 0 = keep
    box: tuple[int, int, int, int]
    work_image: Image.Image  # the box, resized to (width, height)
    work_mask: Image.Image  # binary L of the box, resized


def as_rgb(image: Image.Image, what: str = "init image") -> Image.Image:
    try:
        image.load()
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read the {what}: {exc}") from exc
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def fit_init(image: Image.Image, width: int, height: int) -> Image.Image:
    """img2img: the init image at the request size (resized only when it differs)."""
    image = as_rgb(image)
    return image if image.size == (width, height) else image.resize((width, height), Image.LANCZOS)


def plan_inpaint(request: GenerationRequest) -> InpaintPlan:
    source = as_rgb(request.init_image)
    mask = request.mask.convert("L")
    w, h = request.width, request.height
    if request.only_masked:
        box = _masked_box(mask, request.mask_padding, w / h)
    else:
        box = (0, 0, source.width, source.height)
    region = source.crop(box)
    region_mask = mask.crop(box)
    if region.size != (w, h):
        region = region.resize((w, h), Image.LANCZOS)
        region_mask = region_mask.resize((w, h), Image.BILINEAR)
    binary = region_mask.point(lambda v: 255 if v > 0 else 0)
    return InpaintPlan(source, mask, box, region, binary)


def _masked_box(mask: Image.Image, padding: int, aspect: float) -> tuple[int, int, int, int]:
    """The mask's bounding box plus ``padding``, grown to the request's aspect ratio, inside the image."""
    left, top, right, bottom = mask.point(lambda v: 255 if v > 0 else 0).getbbox()
    W, H = mask.size
    left, top = max(0, left - padding), max(0, top - padding)
    right, bottom = min(W, right + padding), min(H, bottom + padding)
    bw, bh = right - left, bottom - top
    # Grow the short side so the crop has the generation's aspect ratio (no stretching), clamped.
    if bw / bh < aspect:
        bw = min(W, round(bh * aspect))
    else:
        bh = min(H, round(bw / aspect))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    left = int(min(max(0, round(cx - bw / 2)), W - bw))
    top = int(min(max(0, round(cy - bh / 2)), H - bh))
    return left, top, left + bw, top + bh


def feather_alpha(mask: Image.Image, blur: int) -> np.ndarray:
    """Blend weights in [0, 1]: exactly 0 wherever the mask is 0, ramping up inside the mask edge."""
    m = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    if blur <= 0:
        return m
    binary = mask.convert("L").point(lambda v: 255 if v > 0 else 0)
    soft = np.asarray(binary.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 255.0
    # soft is 0.5 on the mask edge and 1 well inside: map [0.5, 1] -> [0, 1] so the ramp lies inside.
    ramp = np.clip((soft - 0.5) * 2.0, 0.0, 1.0)
    return m * ramp


def paste_back(plan: InpaintPlan, generated: Image.Image, blur: int) -> Image.Image:
    """Composite ``generated`` (request size) into the source through the feathered mask."""
    left, top, right, bottom = plan.box
    region = as_rgb(generated)
    if region.size != (right - left, bottom - top):
        region = region.resize((right - left, bottom - top), Image.LANCZOS)
    src = np.asarray(plan.source, dtype=np.uint8)
    out = src.copy()
    alpha = feather_alpha(plan.mask, blur)[top:bottom, left:right, None]
    old = src[top:bottom, left:right].astype(np.float32)
    new = np.asarray(region, dtype=np.float32)
    blended = np.rint(old * (1.0 - alpha) + new * alpha).astype(np.uint8)
    # Where alpha is exactly 0 the source bytes are kept as they are (no float round trip).
    out[top:bottom, left:right] = np.where(alpha > 0, blended, src[top:bottom, left:right])
    return Image.fromarray(out, "RGB")

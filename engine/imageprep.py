"""Image preparation around a pipeline call: init/mask sizing, the "only masked region" crop, the
feathered paste-back that keeps every pixel outside the mask bit-identical to the input, and the
canvas extension (outpainting) with its pre-fill.

Sizes that are not a multiple of 8 (the latent grid): when a whole image is worked on at its own
size rounded up to a multiple of 8 (``padded_size``), the image is padded on the right and bottom by
repeating its edge pixels, generated, and the result cropped back to the image's size. Nothing is
stretched. A request for any other size resizes to it, as asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.api import GenerationRequest, ImageError
from engine.lazy import LazyModule

# Pillow (~20 ms to import) is imported on first use, after the desktop app's window is shown.
Image = LazyModule("PIL.Image")

ImageFilter = LazyModule("PIL.ImageFilter")  # first used by a job, not at start-up

np = LazyModule("numpy")  # imported on first use: keeps numpy off the window's start-up path


@dataclass(frozen=True)
class InpaintPlan:
    """Where to generate: ``box`` (left, top, right, bottom) of the source, fitted to the request size
    (padded with its edge pixels when ``padded``, else resized)."""

    source: Image.Image  # RGB, the full input image
    mask: Image.Image  # L, full size, 0 = keep
    box: tuple[int, int, int, int]
    work_image: Image.Image  # the box at (width, height)
    work_mask: Image.Image  # binary L of the box at (width, height)
    padded: bool = False  # the box was padded (not resized): crop the output back, never resize


@dataclass(frozen=True)
class Img2ImgPlan:
    """img2img on an image padded to the latent grid: ``crop`` is the size to cut the output back to."""

    work_image: Image.Image
    crop: tuple[int, int] | None


def padded_size(width: int, height: int, minimum: int = 64) -> tuple[int, int]:
    """The size a whole image is generated at: each side rounded up to a multiple of 8, at least 64."""
    return max(minimum, -(-width // 8) * 8), max(minimum, -(-height // 8) * 8)


def pad_edges(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` extended on the right and bottom to ``size`` by repeating its last column and row."""
    if image.size == size:
        return image
    a = np.asarray(image)
    pad = ((0, size[1] - image.height), (0, size[0] - image.width)) + (((0, 0),) if a.ndim == 3 else ())
    return Image.fromarray(np.pad(a, pad, mode="edge"), image.mode)


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
    """img2img: the init image at the request size (padded by the rule above, or resized)."""
    return plan_img2img(image, width, height).work_image


def plan_img2img(image: Image.Image, width: int, height: int) -> Img2ImgPlan:
    """img2img: pad to the latent grid and crop back when the request is the image's padded size."""
    image = as_rgb(image)
    if image.size == (width, height):
        return Img2ImgPlan(image, None)
    if padded_size(*image.size) == (width, height):
        return Img2ImgPlan(pad_edges(image, (width, height)), image.size)
    return Img2ImgPlan(image.resize((width, height), Image.LANCZOS), None)


def plan_inpaint(request: GenerationRequest) -> InpaintPlan:
    """Crop (only-masked) and fit the init image and mask to the request size."""
    source = as_rgb(request.init_image)
    mask = request.mask.convert("L")
    w, h = request.width, request.height
    if request.only_masked:
        box = masked_box(mask, request.mask_padding, w / h)
    else:
        box = (0, 0, source.width, source.height)
    region = source.crop(box)
    region_mask = mask.crop(box)
    padded = False
    if region.size != (w, h):
        if not request.only_masked and padded_size(*region.size) == (w, h):
            region, padded = pad_edges(region, (w, h)), True
            region_mask = pad_edges(region_mask, (w, h))
        else:
            region = region.resize((w, h), Image.LANCZOS)
            region_mask = region_mask.resize((w, h), Image.BILINEAR)
    binary = region_mask.point(lambda v: 255 if v > 0 else 0)
    return InpaintPlan(source, mask, box, region, binary, padded)


def finish(plan: InpaintPlan | Img2ImgPlan | None, generated: Image.Image, blur: int) -> Image.Image:
    """The pipeline's output as the user gets it: pasted back (inpaint), cropped back (padded), or as is."""
    if isinstance(plan, InpaintPlan):
        return paste_back(plan, generated, blur)
    if isinstance(plan, Img2ImgPlan) and plan.crop is not None:
        return generated.crop((0, 0, *plan.crop))
    return generated


def masked_box(mask: Image.Image, padding: int, aspect: float) -> tuple[int, int, int, int]:
    """"Only masked region": the mask's bounding box plus ``padding``, grown to the request's aspect
    ratio, inside the image."""
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


_masked_box = masked_box


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
    if plan.padded:
        region = region.crop((0, 0, right - left, bottom - top))
    elif region.size != (right - left, bottom - top):
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


# ------------------------------------------------------------------------------ outpainting

FILLS = ("edge", "blur", "colour")


def extend_canvas(
    image: Image.Image, left: int, top: int, right: int, bottom: int, fill: str = "blur"
) -> tuple[Image.Image, Image.Image]:
    """Grow ``image`` by the given pixels on each side; returns (image, mask of the new area).

    The new area is pre-filled so generation starts from plausible colours: ``edge`` stretches the
    border pixels outwards, ``blur`` does the same then blurs the new area (stronger further out),
    ``colour`` uses the image's mean colour. The original pixels are copied unchanged.
    """
    if min(left, top, right, bottom) < 0:
        raise ImageError("the canvas can only be extended by zero or more pixels on each side")
    if fill not in FILLS:
        raise ImageError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    rgb = as_rgb(image, "image")
    W, H = rgb.width + left + right, rgb.height + top + bottom
    src = np.asarray(rgb)
    pad = ((top, bottom), (left, right), (0, 0))
    if fill == "colour":
        mean = src.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
        out = np.empty((H, W, 3), np.uint8)
        out[:] = mean
    else:
        out = np.pad(src, pad, mode="edge")
        if fill == "blur" and (left or top or right or bottom):
            out = _blur_outwards(out, (left, top, left + rgb.width, top + rgb.height))
    out[top:top + rgb.height, left:left + rgb.width] = src
    mask = np.full((H, W), 255, np.uint8)
    mask[top:top + rgb.height, left:left + rgb.width] = 0
    return Image.fromarray(out, "RGB"), Image.fromarray(mask, "L")


def _blur_outwards(stretched: np.ndarray, inner: tuple[int, int, int, int]) -> np.ndarray:
    """Blend the edge-stretched area towards a heavy blur with distance from the original image."""
    h, w = stretched.shape[:2]
    l, t, r, b = inner
    radius = max(4, min(64, max(l, t, w - r, h - b) // 2))  # about half the widest new strip
    blurred = np.asarray(Image.fromarray(stretched).filter(ImageFilter.GaussianBlur(radius)), np.float32)
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    dist = np.maximum(np.maximum(l - xs, xs - (r - 1)), np.maximum(t - ys, ys - (b - 1))).clip(0)
    weight = np.clip(dist / float(radius), 0.0, 1.0)[..., None]
    out = stretched.astype(np.float32) * (1 - weight) + blurred * weight
    return np.rint(out).astype(np.uint8)


def source_hash(image) -> str:
    """A1111's "Init image hash": the MD5 of the source's RGB pixel bytes, so the metadata says which
    image a result came from without embedding it. Any thread."""
    import hashlib

    return hashlib.md5(as_rgb(image).tobytes()).hexdigest()

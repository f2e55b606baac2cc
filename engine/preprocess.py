"""Preprocessors: the artist's picture -> the control image a control model (ControlNet) expects.

``canny`` (OpenCV's Canny edges), ``scribble`` (the artist's strokes, binarised and thickened, white on
black), ``lineart`` (soft edges from the image's gradients: a simple detector without a model),
``depth`` (a depth model from the library, Depth Anything or DPT through transformers), ``tile``
(the image resized, optionally blurred down), ``inpaint`` (the masked region made transparent: the
inpaint ControlNet reads it as "fill this"). ``pose`` takes a pose picture as it is; ``draw_pose`` draws
one from keypoints (OpenPose's 18 body points, its colours and limbs). Every function
returns a new PIL image and leaves its input alone. Any thread but the GUI's (depth loads a model); ``draw_pose``
is quick enough for the GUI thread (the canvas redraws a figure while a joint is dragged).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from engine.api import CONTROL_KINDS, EaselError, ImageError
from engine.lazy import LazyModule

np = LazyModule("numpy")

# kind -> the preprocessor that makes its control image ("" = the picture is the control image)
PREPROCESSORS = {"canny": "canny", "scribble": "scribble", "lineart": "lineart", "depth": "depth", "tile": "tile",
                 "inpaint": "inpaint", "pose": ""}
assert set(PREPROCESSORS) == set(CONTROL_KINDS)
DEPTH_CLASSES = ("DepthAnythingForDepthEstimation", "DPTForDepthEstimation")
DEPTH_WHERE = ("put a depth model folder (Depth Anything or DPT from Hugging Face: config.json, "
               "preprocessor_config.json and model.safetensors) in the models folder's depth/ folder, "
               "or give its path with --depth-model")


class NoDepthModel(EaselError):
    """No depth model to make a depth control image with (one line saying where to put one)."""


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # a broken install: say which package
        raise EaselError("the canny preprocessor needs OpenCV (pip install opencv-python-headless)") from exc
    return cv2


def _gray(image: Image.Image):
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _rgb(a) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(a), "L").convert("RGB")


def canny(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """White Canny edges on black (A1111's defaults: thresholds 100 and 200)."""
    if not 0 <= low <= high <= 255 * 4:
        raise ImageError(f"canny thresholds must be 0 <= low <= high (got {low}, {high})")
    return _rgb(_cv2().Canny(_gray(image), int(low), int(high)))


def scribble(image: Image.Image, thickness: int | None = None) -> Image.Image:
    """The strokes, white on black, thickened: dark strokes on a light ground (a sketch on paper) and light
    strokes on a dark ground both work; transparent pixels of a layer count as ground."""
    if image.mode == "RGBA":  # a paint layer: opaque pixels are strokes
        strokes = np.asarray(image.getchannel("A")) >= 128
    else:
        g = _gray(image)
        strokes = g < 128 if g.mean() >= 128 else g >= 128
    width = thickness if thickness is not None else max(1, round(max(image.size) / 256))
    out = strokes.astype(np.uint8) * 255
    if width > 1:
        cv2 = _cv2()
        out = cv2.dilate(out, np.ones((width, width), np.uint8))
    return _rgb(out)


def lineart(image: Image.Image) -> Image.Image:
    """Soft white lines on black from the image's gradients (Sobel on a lightly blurred grey image)."""
    cv2 = _cv2()
    g = cv2.GaussianBlur(_gray(image).astype(np.float32), (0, 0), 1.0)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    top = float(np.percentile(mag, 99.5)) or 1.0
    return _rgb(np.clip(mag / top * 255.0, 0, 255).astype(np.uint8))


def tile(image: Image.Image, size: tuple[int, int] | None = None, down: float = 1.0) -> Image.Image:
    """The image at ``size`` (default its own), first shrunk ``down`` times (a softer guide) when above 1."""
    size = size or image.size
    im = image.convert("RGB")
    if down > 1:
        im = im.resize((max(8, round(im.width / down)), max(8, round(im.height / down))), Image.Resampling.BOX)
    return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)


def inpaint(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The image with the masked region (white in ``mask``) transparent: RGBA, what the inpaint control takes."""
    if mask.size != image.size:
        raise ImageError(f"mask is {mask.size[0]}x{mask.size[1]} but the image is {image.size[0]}x{image.size[1]}")
    out = image.convert("RGB").convert("RGBA")
    out.putalpha(Image.eval(mask.convert("L"), lambda v: 0 if v >= 128 else 255))
    return out


# ---------------------------------------------------------------------------------------- depth


def _depth_folder(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8")[:1_000_000])
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and any(a in DEPTH_CLASSES for a in config.get("architectures") or ())


def find_depth_model(folders) -> str:
    """A depth model folder in ``folders`` (each searched three levels down, the HF cache's snapshots
    too), or "" when there is none. Any thread but the GUI's."""
    for top in folders:
        top = Path(top)
        if not top.is_dir():
            continue
        stack = [(top, 0)]
        while stack:
            folder, depth = stack.pop()
            if (folder / "config.json").is_file() and _depth_folder(folder):
                return str(folder)
            if depth >= 4:
                continue
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            stack.extend((c, depth + 1) for c in reversed(children) if c.name not in ("blobs", "refs"))
    return ""


def depth_folders(library) -> list[str]:
    """Where depth models are looked for: every model-library root (its depth/ folder first)."""
    roots = [r.path for r in library.roots()] if library is not None else []
    return [os.path.join(r, "depth") for r in roots] + roots


def depth(image: Image.Image, model: str = "", library=None, device: str = "cpu") -> Image.Image:
    """A depth map (near = white) from a depth model: ``model`` (a folder), else the first the library's
    folders hold. Raises NoDepthModel (one line saying where to put one) when there is none."""
    path = model or find_depth_model(depth_folders(library))
    if not path:
        raise NoDepthModel(f"no depth model found: {DEPTH_WHERE}")
    if not _depth_folder(Path(path)):
        raise NoDepthModel(f"{path}: not a depth model folder ({DEPTH_WHERE})")
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    from engine.core.loading import quiet_libraries

    quiet_libraries()  # no progress bars in the user's terminal

    try:
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        net = AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True, use_safetensors=True).eval()
    except (OSError, ValueError) as exc:
        raise NoDepthModel(f"{path}: the depth model cannot be loaded ({' '.join(str(exc).split())[:120]})") from exc
    net.to(device)
    with torch.inference_mode():
        inputs = processor(images=image.convert("RGB"), return_tensors="pt").to(device)
        predicted = net(**inputs).predicted_depth
        if predicted.dim() == 3:
            predicted = predicted[:, None]
        d = torch.nn.functional.interpolate(predicted.float(), size=(image.height, image.width), mode="bicubic",
                                            align_corners=False)[0, 0]
    d = d - d.min()
    d = (d / d.max().clamp(min=1e-8) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return _rgb(d)


# ---------------------------------------------------------------------------------------- one entry


def run(kind: str, image: Image.Image, *, mask: Image.Image | None = None, size: tuple[int, int] | None = None,
        depth_model: str = "", library=None, device: str = "cpu") -> Image.Image:
    """The control image for ``kind`` made from ``image`` (``mask``: for inpaint; ``size``: for tile)."""
    if kind not in PREPROCESSORS:
        raise ImageError(f"unknown control kind {kind!r}; choose one of {', '.join(PREPROCESSORS)}")
    if kind == "canny":
        return canny(image)
    if kind == "scribble":
        return scribble(image)
    if kind == "lineart":
        return lineart(image)
    if kind == "tile":
        return tile(image, size)
    if kind == "depth":
        return depth(image, depth_model, library, device)
    if kind == "inpaint":
        if mask is None:
            raise ImageError("the inpaint preprocessor needs a mask (white = the region to fill)")
        return inpaint(image, mask)
    return image.convert("RGB")  # pose: the pose picture is the control image


# ---------------------------------------------------------------------------------------- pose

# The 18 body keypoints of OpenPose's COCO model, in its order, and the limbs (pairs of keypoints) and
# colours its renderer draws (controlnet_aux's draw_bodypose, which the pose ControlNets were trained on).
POSE_JOINTS = ("nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder", "left elbow",
               "left wrist", "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle",
               "right eye", "left eye", "right ear", "left ear")
POSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
              (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
POSE_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
                (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
                (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))


def draw_pose(people, size: tuple[int, int], box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """The OpenPose control image of ``people`` (each 18 keypoints in POSE_JOINTS order, [x, y] in pixels
    or None where a joint is not shown) on black at ``size``: limbs as ellipses at 60% of their colour,
    joints as dots, as OpenPose's renderer draws them (its 4 px limbs at 512 px, scaled with the image).
    With ``box`` (l, t, r, b) only that part of the image, the same pixels as a crop of the whole."""
    import math

    cv2 = _cv2()
    w, h = size
    l, t, r, b = box if box is not None else (0, 0, w, h)
    canvas = np.zeros((max(0, b - t), max(0, r - l), 3), np.uint8)
    scale = max(1.0, min(w, h) / 512)
    stick, radius = max(1, round(4 * scale)), max(1, round(4 * scale))
    for person in people:
        for (i, j), colour in zip(POSE_LIMBS, POSE_COLOURS):
            if i >= len(person) or j >= len(person) or person[i] is None or person[j] is None:
                continue
            (x1, y1), (x2, y2) = person[i], person[j]
            length = math.hypot(x1 - x2, y1 - y2)
            angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
            centre = (math.floor((x1 + x2) / 2) - l, math.floor((y1 + y2) / 2) - t)
            polygon = cv2.ellipse2Poly(centre, (int(length / 2), stick), int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, polygon, [int(c * 0.6) for c in colour])
        for point, colour in zip(person, POSE_COLOURS):
            if point is not None:
                cv2.circle(canvas, (math.floor(point[0]) - l, math.floor(point[1]) - t), radius, colour, thickness=-1)
    return Image.fromarray(canvas, "RGB")


def pose_margin(size: tuple[int, int]) -> int:
    """How far (pixels) ``draw_pose`` paints beyond a figure's keypoints at ``size``."""
    return 2 * max(1, round(4 * max(1.0, min(size) / 512))) + 2

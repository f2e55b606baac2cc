"""The command line's control inputs: ``--control KIND:IMAGE[:STRENGTH[:START[:END]]]`` (repeatable) with
``--control-model NAME_OR_PATH`` (one per ``--control``, in order; left out: the library's control model
for the model's family and that kind), and ``easel preprocess KIND IMAGE --out FILE``. Main thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.api import CONTROL_KINDS, ControlInput, EaselError, ImageError
from engine.cli_common import EXIT_OK, load_image


def add_options(gen: argparse.ArgumentParser) -> None:
    """The control options of generate / img2img / inpaint."""
    gen.add_argument("--control", action="append", default=[], metavar="KIND:IMAGE[:STRENGTH[:START[:END]]]",
                     help=f"steer with a control model (ControlNet); KIND is one of {', '.join(CONTROL_KINDS)}; "
                     "IMAGE is preprocessed for KIND (canny edges, depth map...) unless --control-as-is; "
                     "STRENGTH 0-2 (default 1), START/END the fraction of steps it acts on (default 0 and 1); repeatable")
    gen.add_argument("--control-model", action="append", default=[], metavar="NAME_OR_PATH",
                     help="the control model of each --control, in order (default: one for the model's family "
                     "and that kind from the model folders)")
    gen.add_argument("--control-as-is", action="store_true",
                     help="the --control images are control images already (edges, depth maps): no preprocessing")
    gen.add_argument("--depth-model", default="", metavar="FOLDER",
                     help="the depth model (Depth Anything / DPT folder) that makes depth control images")


def add_reference_options(gen: argparse.ArgumentParser) -> None:
    """The reference-image options of generate / img2img / inpaint (IP-Adapter; an instruction editor's
    further input images)."""
    gen.add_argument("--reference", action="append", default=[], metavar="IMAGE[:WEIGHT]",
                     help="a reference image: for SD 1.5 / SDXL, one whose style or subject the result takes "
                     "(IP-Adapter; WEIGHT 0-2, default 1); for FLUX.1 [dev] / [schnell] the same through FLUX.1 "
                     "Redux; for Qwen-Image-Edit Plus and FLUX.2, a further input image "
                     "(\"put the hat from image 2 on the cat\"; WEIGHT 0 leaves it out); repeatable")
    gen.add_argument("--ip-adapter", default="", metavar="NAME_OR_PATH",
                     help="the IP-Adapter (FLUX.1: the Redux model) of the --reference images (default: one for the "
                     "model's family from the model folders: ComfyUI models/ipadapter or models/style_models, A1111 "
                     "models/ControlNet)")
    gen.add_argument("--image-encoder", default="", metavar="PATH",
                     help="its image encoder (CLIP vision; FLUX.1 Redux: SigLIP), a folder or .safetensors (default: an "
                     "image_encoder folder beside the adapter, or ComfyUI models/clip_vision)")


def references_from_args(args) -> tuple:
    """The ReferenceInputs ``--reference IMAGE[:WEIGHT]`` asks for (a path may hold ':')."""
    from engine.api import ReferenceInput

    out = []
    for spec in getattr(args, "reference", []) or []:
        path, weight = spec, 1.0
        head, sep, tail = spec.rpartition(":")
        if sep and head:
            try:
                weight, path = float(tail), head
            except ValueError:
                pass
        image = load_image(path, "reference image")
        out.append(ReferenceInput(image=image, weight=weight, model=getattr(args, "ip_adapter", "") or "",
                                  encoder=getattr(args, "image_encoder", "") or ""))
    return tuple(out)


def add_region_options(gen: argparse.ArgumentParser) -> None:
    """The region options of generate / img2img / inpaint (regional prompting)."""
    gen.add_argument("--region", action="append", default=[], metavar="MASK:PROMPT",
                     help="an area with its own prompt: MASK is a picture (white = the area, stretched to the image), "
                     "PROMPT what that area shows; the main --prompt goes everywhere else; repeatable (a later region "
                     "wins where they overlap). SD 1.x / 2.x, SDXL and FLUX.1 take them")
    gen.add_argument("--region-weight", action="append", default=[], type=float, metavar="W",
                     help="how much each --region's area follows its prompt rather than the main one, in order "
                     "(0-1, default 1)")


def regions_from_args(args) -> tuple:
    """The RegionInputs ``--region MASK:PROMPT`` (and ``--region-weight``) ask for. MASK is the part before the
    first ':' that names a file (a path may hold ':', and so may a prompt). Main thread."""
    from engine.api import RegionInput

    specs = getattr(args, "region", []) or []
    weights = getattr(args, "region_weight", []) or []
    if len(weights) > len(specs):
        raise EaselError(f"--region-weight: {len(weights)} given for {len(specs)} --region")
    out = []
    for i, spec in enumerate(specs):
        cuts = [j for j, ch in enumerate(spec) if ch == ":"]
        cut = next((j for j in cuts if Path(spec[:j]).expanduser().is_file()), None)
        if cut is None:
            if not cuts or not spec[cuts[-1] + 1:].strip():
                raise EaselError(f"--region: write MASK:PROMPT (e.g. left.png:\"a red ball\"), got {spec!r}")
            raise EaselError(f"--region: no mask picture found in {spec!r} (write MASK:PROMPT, MASK an existing file)")
        prompt = spec[cut + 1:]
        if not prompt.strip():
            raise EaselError(f"--region: the region {spec[:cut]} has no prompt (write MASK:PROMPT)")
        mask = load_image(spec[:cut], "region mask")
        out.append(RegionInput(mask=mask, prompt=prompt, weight=weights[i] if i < len(weights) else 1.0))
    return tuple(out)


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("preprocess", parents=[common], help="turn an image into a control image (canny edges, depth...)")
    p.add_argument("kind", choices=CONTROL_KINDS, metavar="KIND", help=f"one of {', '.join(CONTROL_KINDS)}")
    p.add_argument("image")
    p.add_argument("--out", required=True, metavar="FILE", help="the .png to write")
    p.add_argument("--mask", metavar="MASK", help="for inpaint: white = the region to fill")
    p.add_argument("--size", metavar="WxH", help="for tile: the size to make (default the image's)")
    p.add_argument("--depth-model", default="", metavar="FOLDER", help="for depth: the depth model folder")
    p.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                   help="a folder to look in for a depth model (repeatable)")


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise EaselError(f"--control: {what} must be a number (got {text!r})") from None


def parse_spec(spec: str) -> tuple[str, str, list[float]]:
    """``KIND:IMAGE[:STRENGTH[:START[:END]]]`` -> (kind, image path, numbers). An image path may hold ':'
    (C:\\pictures\\a.png): numbers are taken from the right only while they are numbers."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise EaselError(f"--control: write KIND:IMAGE (e.g. canny:photo.png), got {spec!r}")
    if kind not in CONTROL_KINDS:
        raise EaselError(f"--control: unknown kind {kind!r}; choose one of {', '.join(CONTROL_KINDS)}")
    numbers: list[float] = []
    parts = rest.split(":")
    while len(parts) > 1 and len(numbers) < 3:
        try:
            value = float(parts[-1])
        except ValueError:
            break
        numbers.insert(0, value)
        parts.pop()
    return kind, ":".join(parts), numbers


def controls_from_args(args, library, mode_size: tuple[int, int] | None, mask=None) -> tuple[ControlInput, ...]:
    """The ControlInputs the options ask for, each image preprocessed for its kind (unless --control-as-is)."""
    from engine import preprocess

    specs = getattr(args, "control", []) or []
    models = getattr(args, "control_model", []) or []
    if len(models) > len(specs):
        raise EaselError(f"--control-model: {len(models)} given for {len(specs)} --control")
    out = []
    for i, spec in enumerate(specs):
        kind, path, numbers = parse_spec(spec)
        image = load_image(path, f"{kind} control image")
        strength, start, end = (numbers + [1.0, 0.0, 1.0][len(numbers):])[:3]
        made_by = ""
        if not args.control_as_is and preprocess.PREPROCESSORS[kind]:
            if kind == "inpaint" and mask is None:
                raise EaselError("--control inpaint:IMAGE needs a mask: use it with `easel inpaint --mask`, or give "
                                 "a preprocessed image with --control-as-is")
            image = preprocess.run(kind, image, mask=_fit(mask, image), size=mode_size, library=library,
                                   depth_model=getattr(args, "depth_model", ""), device=args.device or "cpu")
            made_by = preprocess.PREPROCESSORS[kind]
        out.append(ControlInput(kind=kind, image=image, model=models[i] if i < len(models) else "",
                                strength=strength, start=start, end=end, preprocessor=made_by))
    return tuple(out)


def _fit(mask, image):
    if mask is None or mask.size == image.size:
        return mask
    from PIL import Image

    return mask.convert("L").resize(image.size, Image.Resampling.NEAREST)


def run_preprocess(args) -> int:
    """``easel preprocess KIND IMAGE --out FILE``. Main thread."""
    from engine import preprocess
    from engine.cli_common import library_for

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise EaselError(f"--out: write a .png file (got {out.name})")
    if not out.parent.is_dir():
        raise EaselError(f"--out: the folder {out.parent} does not exist")
    image = load_image(args.image, "image")
    mask = load_image(args.mask, "mask").convert("L") if args.mask else None
    size = None
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise EaselError(f"--size: write WxH, e.g. 512x512 (got {args.size!r})") from None
        if not (8 <= w <= 8192 and 8 <= h <= 8192):
            raise ImageError(f"--size: {w}x{h} is out of range (8 to 8192 a side)")
        size = (w, h)
    library = library_for(args) if args.kind == "depth" and not args.depth_model else None
    result = preprocess.run(args.kind, image, mask=mask, size=size, depth_model=args.depth_model, library=library,
                            device=args.device or "cpu")
    result.save(out)
    print(out)
    return EXIT_OK

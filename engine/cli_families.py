"""``easel upscale`` and ``easel variations``: the jobs beyond text-to-image, from the command line."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from engine.api import MEMORY_PRESETS, EaselError


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    up = sub.add_parser("upscale", parents=[common],
                        help="enlarge an image with a GAN upscaler (ESRGAN class) or the SD x4 diffusion upscaler")
    up.add_argument("image")
    up.add_argument("--model", required=True, metavar="PATH",
                    help="upscaler weights (.safetensors, or .pth read weights-only), or an SD x4 upscaler folder")
    up.add_argument("--scale", type=int, default=None, choices=(1, 2, 3, 4, 8),
                    help="final scale (default: the model's own); other scales resample the model's output")
    up.add_argument("--tile", type=int, default=512, metavar="PX", help="tile size, bounds memory (0 = one pass)")
    up.add_argument("--overlap", type=int, default=32, metavar="PX", help="overlap between tiles, cross-faded")
    up.add_argument("--out", required=True, metavar="FILE", help="the .png to write")
    up.add_argument("--no-metadata", action="store_true", help="save without the source's settings")
    x4 = up.add_argument_group("SD x4 upscaler folder only")
    x4.add_argument("--prompt", default=None, metavar="TEXT", help="what the image shows (default: its stored prompt)")
    x4.add_argument("--seed", type=int, default=None, help="default: random (recorded in the image)")
    x4.add_argument("--steps", type=int, default=None, help="denoising steps per tile (default 20)")
    x4.add_argument("--memory", default="auto", choices=MEMORY_PRESETS,
                    help="memory preset; it also sets the tile size (fast 256 px ... low 128 px of the source)")

    var = sub.add_parser("variations", parents=[common], help="new versions of an image (img2img, new seeds)")
    var.add_argument("image")
    var.add_argument("--model", required=True, metavar="PATH", help="a .safetensors checkpoint or diffusers folder")
    var.add_argument("--count", type=int, default=4, help="how many variations")
    var.add_argument("--strength", default="subtle", metavar="subtle|strong|X",
                     help="subtle (0.35), strong (0.7) or a number in (0, 1]")
    var.add_argument("--prompt", default=None, metavar="TEXT", help="default: the prompt stored in the image")
    var.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    var.add_argument("--steps", type=int, default=None, help="default: the stored steps, or the model's default")
    var.add_argument("--out", metavar="FILE_OR_DIR", help="a .png file or a folder (default: the gallery)")
    var.add_argument("--no-metadata", action="store_true")


def run_upscale(args) -> int:
    """Runs on the CLI's main thread."""
    from engine.api import UpscaleRequest
    from engine.cli_common import load_image
    from engine.engine import Engine
    from engine.metadata import read_metadata
    from engine.upscale import save_upscaled

    image = load_image(args.image, "image")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise EaselError(f"--out {out}: give a .png file name")
    if Path(args.model).expanduser().is_dir():
        return _run_diffusion_upscale(args, image)
    if args.tile and args.tile < 32:
        raise EaselError("--tile: at least 32 px (or 0 for one pass)")
    request = UpscaleRequest(model=args.model, image=image, scale=args.scale, tile=args.tile or 0,
                             overlap=args.overlap, memory_preset=args.memory)
    bar = _TileBar()
    try:
        result = Engine(device=args.device or "cpu", keep_models=0).upscale(request, bar.update, threading.Event())
    finally:
        bar.close()
    texts = read_metadata(args.image).raw
    path = save_upscaled(result, texts, out, embed=not args.no_metadata)
    print(path)
    print(f"{result.source_size[0]}x{result.source_size[1]} -> {result.image.width}x{result.image.height} "
          f"with {result.model_name} ({result.architecture}) in {result.seconds:.1f}s", file=sys.stderr)
    return 0


def _run_diffusion_upscale(args, image) -> int:
    """A diffusers upscaler folder (SD x4): an ordinary generation, saved with its own metadata."""
    from engine.cli_common import run_and_save
    from engine.families import upscale_request
    from engine.metadata import read_metadata
    from engine.files.probe import check_model

    from engine.families import capabilities

    info = check_model(args.model)
    caps = capabilities(info)
    if caps is None or caps.upscale_kind != "diffusion":
        raise EaselError(f"{args.model}: this folder is not an upscaler ({info.family or info.kind} model); "
                         "give an SD x4 upscaler folder or GAN upscaler weights")
    if args.scale not in (None, 4):
        raise EaselError(f"--scale {args.scale}: the SD x4 upscaler enlarges 4x; use --scale 4 or a GAN upscaler")
    request = upscale_request(image, args.model, info, read_metadata(args.image), seed=args.seed)
    changes = {"memory_preset": args.memory}
    if args.prompt is not None:
        changes["prompt"] = args.prompt
    if args.steps is not None:
        changes["steps"] = args.steps
    return run_and_save(args, request.replace(**changes), str(args.out), embed=not args.no_metadata)


def run_variations(args) -> int:
    """Runs on the CLI's main thread."""
    from engine.cli_common import run_and_save, load_image
    from engine.metadata import read_metadata
    from engine.files.probe import check_model
    from engine.variations import parse_strength, variation_request

    image = load_image(args.image, "image")
    info = check_model(args.model)
    request = variation_request(
        image, args.model, info, read_metadata(args.image), count=args.count,
        strength=parse_strength(args.strength), seed=args.seed, prompt=args.prompt, steps=args.steps,
    )
    return run_and_save(args, request, args.out, embed=not args.no_metadata)


class _TileBar:
    def __init__(self):
        self._bar = None

    def update(self, progress) -> None:
        if not sys.stderr.isatty():
            return
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=progress.total, desc="upscaling", unit="tile", file=sys.stderr, leave=False)
        self._bar.n = progress.step
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

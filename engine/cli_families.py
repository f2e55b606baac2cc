"""``easel upscale`` and ``easel variations``: the jobs beyond text-to-image, from the command line."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from engine.api import MEMORY_PRESETS, PLAIN_UPSCALER, EaselError


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    up = sub.add_parser("upscale", parents=[common],
                        help="enlarge an image with a GAN upscaler (ESRGAN class) or the SD x4 diffusion upscaler")
    up.add_argument("image")
    up.add_argument("--model", required=True, metavar="PATH",
                    help="upscaler weights (.safetensors, or .pth read weights-only), or an SD x4 upscaler folder")
    up.add_argument("--scale", type=int, default=None, choices=(1, 2, 3, 4, 8),
                    help="final scale (default: the model's own); other scales resample the model's output")
    up.add_argument("--tile", type=int, default=None, metavar="PX",
                    help="tile size, bounds memory (0 = one pass; default 512, with --detail 1024)")
    up.add_argument("--overlap", type=int, default=None, metavar="PX",
                    help="overlap between tiles, cross-faded (default 32, with --detail 128)")
    up.add_argument("--out", required=True, metavar="FILE", help="the .png to write")
    up.add_argument("--no-metadata", action="store_true", help="save without the source's settings")
    detail = up.add_argument_group("with detail (--detail): any model that runs image to image")
    detail.add_argument("--detail", action="store_true",
                        help="enlarge (--upscaler), then img2img over tiles with --model and the image's prompt")
    detail.add_argument("--upscaler", default=PLAIN_UPSCALER, metavar="GAN|lanczos",
                        help="what enlarges the image first: a GAN upscaler's file or name, or lanczos (default)")
    detail.add_argument("--strength", type=float, default=None, help="how much each tile changes (0-1], default 0.35")
    x4 = up.add_argument_group("SD x4 upscaler folder only (--prompt, --seed, --steps also with --detail)")
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


def add_hires_arguments(parser: argparse.ArgumentParser) -> None:
    """``easel generate``'s hires fix flags (A1111's Hires. fix)."""
    hires = parser.add_argument_group("hires fix: make the image, enlarge it, refine it at the large size")
    hires.add_argument("--hires", type=float, default=None, metavar="SCALE",
                       help="enlarge by SCALE (1-4), then refine with image to image at that size")
    hires.add_argument("--hires-steps", type=int, default=None, metavar="N",
                       help="steps of the second pass (default: as many as --steps)")
    hires.add_argument("--hires-denoise", type=float, default=None, metavar="D",
                       help="denoising strength of the second pass (0-1], default 0.5")
    hires.add_argument("--hires-upscaler", default=None, metavar="NAME|lanczos|Latent",
                       help="what enlarges the first pass: a GAN upscaler's file or name, lanczos (default), or "
                            "Latent (A1111's: the first pass's latents enlarged, SD and SDXL; also \"Latent (nearest-exact)\", "
                            "\"Latent (bicubic)\"…)")


def hires_fields(args, mode) -> dict:
    """The GenerationRequest fields of the hires fix flags ({} when --hires is not given)."""
    from engine.api import Mode

    given = [f for f in ("hires_steps", "hires_denoise", "hires_upscaler") if getattr(args, f, None) is not None]
    if getattr(args, "hires", None) is None:
        if given:
            raise EaselError(f"--{given[0].replace('_', '-')}: give --hires SCALE too (e.g. --hires 2)")
        return {}
    if mode is not Mode.TXT2IMG:
        raise EaselError("--hires: the hires fix enlarges a new image; leave out --init (or use easel upscale --detail)")
    fields = {"hires_scale": args.hires}
    if args.hires_steps is not None:
        fields["hires_steps"] = args.hires_steps
    if args.hires_denoise is not None:
        fields["hires_strength"] = args.hires_denoise
    if args.hires_upscaler is not None:
        fields["upscaler"] = args.hires_upscaler
    return fields


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
    if args.detail:
        return _run_detail_upscale(args, image)
    if args.strength is not None or args.upscaler != PLAIN_UPSCALER:
        raise EaselError("--strength and --upscaler go with --detail (img2img over tiles with a generator)")
    if Path(args.model).expanduser().is_dir():
        return _run_diffusion_upscale(args, image)
    args.tile = 512 if args.tile is None else args.tile
    args.overlap = 32 if args.overlap is None else args.overlap
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


def _run_detail_upscale(args, image) -> int:
    """``--detail``: enlarge, then img2img over tiles with the generator ``--model``; saved as a generation
    (its metadata says the upscaler, the tile size and the strength)."""
    from engine import detail_upscale
    from engine.cli_common import run_and_save
    from engine.files.probe import check_model
    from engine.metadata import read_metadata

    info = check_model(args.model)
    tile = detail_upscale.DEFAULT_TILE if args.tile is None else args.tile
    if tile == 0:
        tile = 4096  # "one pass": one tile as large as the image may be
    request = detail_upscale.detail_request(
        image, args.model, info, read_metadata(args.image), scale=float(args.scale or 2),
        strength=detail_upscale.DEFAULT_STRENGTH if args.strength is None else args.strength, tile=tile,
        overlap=detail_upscale.DEFAULT_OVERLAP if args.overlap is None else args.overlap,
        upscaler=args.upscaler, seed=args.seed, prompt=args.prompt, steps=args.steps, memory_preset=args.memory)
    return run_and_save(args, request, str(args.out), embed=not args.no_metadata)


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

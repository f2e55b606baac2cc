"""The ``easel`` command line: generate, edit, inspect and self-test without the window.

User errors print one line (``easel: ...``) and exit 2; no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path

from engine import __version__
from engine.api import MEMORY_PRESETS, SAMPLERS, EaselError, GenerationRequest, ImageError, Mode

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_COMMON_DEFAULTS = {"data_dir": None, "device": None, "debug": False}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage first by default)
        self.exit(EXIT_USAGE, f"easel: {message} (see easel {self.prog.split(' ', 1)[-1]} --help)\n"
                  if " " in self.prog else f"easel: {message} (see easel --help)\n")


def build_parser() -> argparse.ArgumentParser:
    # These options may come before or after the command (``easel --data-dir D gallery list`` or
    # ``easel gallery list --data-dir D``). SUPPRESS keeps a subcommand's unset copy from wiping a
    # value given earlier; main() fills in the defaults.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--data-dir", metavar="DIR", help="settings, logs, outputs and the gallery under DIR")
    common.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best available)")
    common.add_argument("--debug", action="store_true", help="show full tracebacks")

    parser = _Parser(prog="easel", description="Easel: make and edit images with diffusion models, offline.",
                     parents=[common])
    parser.add_argument("--version", action="version", version=f"easel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    gen = argparse.ArgumentParser(add_help=False)
    gen.add_argument("--model", required=True, metavar="PATH", help="a .safetensors checkpoint or diffusers folder")
    gen.add_argument("--prompt", default=None, metavar="TEXT",
                     help="what to make (required, except for a Stable unCLIP model varying an --init image)")
    gen.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    gen.add_argument("--steps", type=int, default=None, help="default: the model's (25; 1 for Turbo models)")
    gen.add_argument("--seed", type=int, default=None, help="default: random (recorded in the image)")
    gen.add_argument("--width", type=int, default=None)
    gen.add_argument("--height", type=int, default=None)
    gen.add_argument("--sampler", default="Euler a", choices=SAMPLERS, metavar="NAME",
                     help=f"one of: {', '.join(SAMPLERS)}")
    gen.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's; 0 for Turbo)")
    gen.add_argument("--batch", type=int, default=1, help="number of images (seeds seed, seed+1, ...)")
    gen.add_argument("--memory", default="auto", choices=MEMORY_PRESETS, help="memory preset")
    gen.add_argument("--vae", default="", metavar="PATH_OR_NAME", help="a VAE file (or its name in the model folders) "
                     "to use instead of the model's own")
    gen.add_argument("--clip-skip", type=int, default=1, metavar="N", help="text-encoder layers to skip (A1111 Clip skip)")
    gen.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                     help="a folder to look in for the LoRAs, embeddings and VAEs the prompt names (repeatable)")
    gen.add_argument("--out", metavar="FILE_OR_DIR", help="a .png file or a folder (default: the gallery, in the outputs folder)")
    gen.add_argument("--no-metadata", action="store_true", help="save without prompt/seed/model chunks")

    edit = argparse.ArgumentParser(add_help=False)
    edit.add_argument("--init", required=True, metavar="IMAGE", help="the source image")
    edit.add_argument("--strength", type=float, default=None, help="how much to change (0-1]")

    generate = sub.add_parser("generate", parents=[common, gen], help="text to image")
    generate.add_argument("--init", default=None, metavar="IMAGE",
                          help="start from this image (as img2img); for a Stable unCLIP model, the image to vary")
    generate.add_argument("--strength", type=float, default=None,
                          help="with --init: how much to change (0-1]; default 0.75, or 0.35 (subtle) for unCLIP")
    sub.add_parser("img2img", parents=[common, gen, edit], help="image to image")
    inpaint = sub.add_parser("inpaint", parents=[common, gen, edit], help="regenerate the masked region")
    inpaint.add_argument("--mask", required=True, metavar="MASK", help="white = regenerate, black = keep")
    inpaint.add_argument("--only-masked", action="store_true", help="work on the mask's region at full resolution")
    inpaint.add_argument("--padding", type=int, default=32, metavar="PX", help="context around the mask (only-masked)")
    inpaint.add_argument("--mask-blur", type=int, default=4, metavar="PX", help="feather of the seam")

    info = sub.add_parser("info", parents=[common], help="show the generation settings stored in an image")
    info.add_argument("image")
    info.add_argument("--json", action="store_true")

    regen = sub.add_parser("regenerate", parents=[common], help="re-run the request stored in an image")
    regen.add_argument("image")
    regen.add_argument("--model", required=True, metavar="PATH")
    regen.add_argument("--out", required=True, metavar="FILE")
    regen.add_argument("--init", metavar="IMAGE", help="source image, for img2img/inpaint images")
    regen.add_argument("--mask", metavar="MASK", help="mask, for inpaint images (default: the mask stored in IMAGE)")
    regen.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                       help="a folder to look in for the LoRAs and VAE the image used (repeatable)")

    from engine import cli_families, cli_gallery, cli_grid, cli_models

    cli_models.add_parser(sub, common)

    mk = sub.add_parser("make-test-model", parents=[common], help="write a tiny random-weight model (for tests/demos)")
    mk.add_argument("dest", metavar="DIR")
    mk.add_argument("--family", default="sd15", help="sd15, sd15-inpaint, sd2-v, sd2-inpaint, sdxl, sdxl-inpaint, amused, "
                    "unclip, realesrgan-compact (a x4 GAN upscaler file whose output looks like the image), esrgan (a x4 "
                    "RRDB upscaler file: random output), deepfloyd-if (a cascade: stage I, II and x4 folders "
                    "inside DIR), sd-x4-upscaler")
    mk.add_argument("--single-file", action="store_true", help="one .safetensors in the original layout")
    mk.add_argument("--seed", type=int, default=0)

    sub.add_parser("selftest", parents=[common], help="check that generation works here, with tiny models")

    cli_gallery.add_parser(sub, common)
    cli_families.add_parsers(sub, common)
    cli_grid.add_parsers(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors (already printed as one line)
        return int(exc.code or 0)
    for name, default in _COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    handler = _COMMANDS[args.command]
    try:
        return handler(args)
    except EaselError as exc:
        if args.debug:
            raise
        print(f"easel: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("easel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # an Easel bug, not the user's: one line, details with --debug
        if args.debug:
            raise
        print(f"easel: internal error: {type(exc).__name__}: {exc} (run again with --debug for details)",
              file=sys.stderr)
        return EXIT_FAILED


# ---------------------------------------------------------------------------------- commands


def _cmd_generate(args) -> int:
    mode = {"generate": Mode.TXT2IMG, "img2img": Mode.IMG2IMG, "inpaint": Mode.INPAINT}[args.command]
    if mode is Mode.TXT2IMG and args.init:
        mode = Mode.IMG2IMG  # ``generate --init``: an image-conditioned job (unCLIP variations, img2img)
    unclip = _is_unclip(args.model)
    if args.prompt is None and not unclip:
        raise EaselError("--prompt: say what to make (e.g. --prompt \"a lighthouse at dusk\")")
    if unclip and mode is Mode.TXT2IMG:
        raise EaselError("Stable unCLIP makes variations of an image: give one with --init IMAGE, "
                         "or use `easel variations IMAGE`")
    init = load_image(args.init, "init image") if mode is not Mode.TXT2IMG else None
    mask = load_image(args.mask, "mask") if mode is Mode.INPAINT else None
    width, height = args.width, args.height
    if init is not None and not getattr(args, "only_masked", False):
        width = width or _multiple_of_8(init.width)
        height = height or _multiple_of_8(init.height)
    fields = dict(
        prompt=args.prompt or "",
        negative_prompt=args.negative,
        model=args.model,
        mode=mode,
        seed=args.seed,
        sampler=args.sampler,
        batch_count=args.batch,
        memory_preset=args.memory,
        clip_skip=args.clip_skip,
        vae=_resolve_vae(args.vae, _library(args)),
        init_image=init,
        mask=mask,
    )
    if args.steps is not None:
        fields["steps"] = args.steps
    if args.cfg is not None:
        fields["guidance_scale"] = args.cfg
    if width:
        fields["width"] = width
    if height:
        fields["height"] = height
    if mode is not Mode.TXT2IMG:
        default_strength = 1.0 if mode is Mode.INPAINT else 0.35 if unclip else 0.75
        fields["strength"] = args.strength if args.strength is not None else default_strength
    if mode is Mode.INPAINT:
        fields.update(only_masked=args.only_masked, mask_padding=args.padding, mask_blur=args.mask_blur)
    request = GenerationRequest(**_with_native_size(fields, args.model))
    return _run_and_save(args, request, args.out, embed=not args.no_metadata)


def _cmd_regenerate(args) -> int:
    from engine.metadata import read_metadata

    meta = read_metadata(args.image)
    if meta.source == "none":
        raise EaselError(f"{args.image}: no generation settings found in this image")
    extra = {"model": args.model}
    mode = Mode(meta.fields.get("mode", "txt2img"))
    if mode is not Mode.TXT2IMG:
        if not args.init:
            raise EaselError(f"{args.image} was made by {mode.value}: give its source image with --init")
        extra["init_image"] = load_image(args.init, "init image")
        stored_hash = meta.extra.get("Init image hash", "")
        if stored_hash:
            from engine.families.unclip import source_hash

            if source_hash(extra["init_image"]) != stored_hash:
                print(f"easel: note: {args.init} is not the image {args.image} was made from (its Init image hash "
                      "differs), so the result will not match", file=sys.stderr)
    if mode is Mode.INPAINT:
        if args.mask:
            extra["mask"] = load_image(args.mask, "mask")
        else:
            from engine.images import mask_from_png

            extra["mask"] = mask_from_png(args.image)  # Easel stores the mask in its inpaint results
            if extra["mask"] is None:
                raise EaselError(f"{args.image} was made by inpaint: give its mask with --mask")
    vae = meta.fields.get("vae") or meta.extra.get("VAE", "")
    if vae:
        extra["vae"] = _resolve_vae(vae, _library(args))
    request = meta.to_request(**extra)
    if request.seed is None:
        raise EaselError(f"{args.image}: the stored settings have no seed, so the image cannot be reproduced")
    return _run_and_save(args, request.replace(batch_count=1), args.out, embed=True)


def _cmd_info(args) -> int:
    from engine.metadata import read_metadata

    path = Path(args.image)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    meta = read_metadata(path)
    if args.json:
        print(json.dumps({
            "source": meta.source,
            "request": meta.fields,
            "model_name": meta.model_name,
            "model_hash": meta.model_hash,
            "extra": meta.extra,
            "warnings": list(meta.warnings),
        }, indent=2, ensure_ascii=False, default=str))
        return EXIT_OK
    if meta.source == "none":
        print(f"{path.name}: no generation settings stored in this image")
        return EXIT_OK
    print(f"source: {meta.source}")
    for key, value in meta.fields.items():
        print(f"{key}: {value}")
    if meta.model_name or meta.model_hash:
        print(f"model: {meta.model_name} [{meta.model_hash}]")
    for key, value in meta.extra.items():
        print(f"{key}: {value}")
    for warning in meta.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def _cmd_make_test_model(args) -> int:
    from engine.testmodels import FAMILIES, make_test_model

    if args.family in ("deepfloyd-if", "sd-x4-upscaler"):
        from engine.families import testmodels_cascade as tm

        if args.family == "deepfloyd-if":
            print(tm.make_cascade_test_model(Path(args.dest), seed=args.seed))
        else:
            print(tm.make_x4_test_model(Path(args.dest), seed=args.seed))
        return EXIT_OK
    if args.family == "amused":
        from engine.families.testmodels import make_amused_test_model

        print(make_amused_test_model(Path(args.dest), seed=args.seed))
        return EXIT_OK
    if args.family == "realesrgan-compact":
        from engine.families.testmodels import make_compact_test_model

        print(make_compact_test_model(Path(args.dest), seed=args.seed))
        return EXIT_OK
    if args.family == "esrgan":
        from engine.families.testmodels import make_esrgan_test_model

        print(make_esrgan_test_model(Path(args.dest), seed=args.seed))
        return EXIT_OK
    if args.family == "unclip":
        from engine.families.testmodels import make_unclip_test_model

        print(make_unclip_test_model(Path(args.dest), seed=args.seed))
        return EXIT_OK
    if args.family not in FAMILIES:
        raise EaselError(f"unknown family {args.family!r}; choose one of {', '.join(FAMILIES)}, amused, unclip, esrgan")
    path = make_test_model(Path(args.dest), family=args.family, single_file=args.single_file, seed=args.seed)
    print(path)
    return EXIT_OK


def _library(args):
    """The model library the CLI resolves LoRA / embedding / VAE names with."""
    from engine.models import ModelLibrary, configured_folders
    from engine.paths import data_dir

    root = data_dir(args.data_dir)
    folders = configured_folders(root) + list(getattr(args, "models_dir", []) or [])
    model = getattr(args, "model", None)
    if model:  # the model's own folder, as A1111 users keep LoRAs near their checkpoints
        folders.append(str(Path(model).expanduser().resolve().parent))
    return ModelLibrary(folders, include_defaults=True, state_dir=root)


def _resolve_vae(vae: str, library) -> str:
    if not vae:
        return ""
    if Path(vae).expanduser().is_file():
        return str(Path(vae).expanduser().resolve())
    entry = library.find("vae", Path(vae).stem)
    if entry is None:
        raise EaselError(f"no VAE called {vae} (give its path, or a folder with --models-dir)")
    return entry.path


def _cmd_selftest(args) -> int:
    from engine.selftest import run_selftest

    return EXIT_OK if run_selftest(device=args.device, out=sys.stdout) else EXIT_FAILED


def _cmd_gallery(args) -> int:
    from engine import cli_gallery

    return cli_gallery.run(args)


def _cmd_models(args) -> int:
    from engine import cli_models

    return cli_models.run(args)


def _cmd_upscale(args) -> int:
    from engine import cli_families

    return cli_families.run_upscale(args)


def _cmd_variations(args) -> int:
    from engine import cli_families

    return cli_families.run_variations(args)


def _cmd_grid(args) -> int:
    from engine import cli_grid

    return cli_grid.run_grid(args) if args.command == "grid" else cli_grid.run_farm(args)


_COMMANDS = {
    "grid": _cmd_grid,
    "farm": _cmd_grid,
    "gallery": _cmd_gallery,
    "upscale": _cmd_upscale,
    "variations": _cmd_variations,
    "generate": _cmd_generate,
    "img2img": _cmd_generate,
    "inpaint": _cmd_generate,
    "info": _cmd_info,
    "regenerate": _cmd_regenerate,
    "make-test-model": _cmd_make_test_model,
    "models": _cmd_models,
    "selftest": _cmd_selftest,
}


# ----------------------------------------------------------------------------------- helpers


def load_image(path: str | None, what: str):
    """Open an image file by engine.images' rules (upright, 8-bit RGB/RGBA, bombs refused); ImageError otherwise."""
    from engine.images import open_image

    if not path:
        raise ImageError(f"no {what} given")
    return open_image(path, what)


def _is_unclip(model: str) -> bool:
    """Whether ``model`` is a Stable unCLIP folder (its prompt is optional); False when it cannot be told."""
    from engine.modelfiles import inspect_model

    return inspect_model(model).family == "unclip"


def _multiple_of_8(v: int) -> int:
    """The image's side rounded up to the latent grid: the engine pads and crops back (no stretch)."""
    return max(64, -(-v // 8) * 8)


def _with_native_size(fields: dict, model: str) -> dict:
    """Fill what the user left out (size, steps, guidance) with the model family's defaults."""
    if all(k in fields for k in ("width", "height", "steps", "guidance_scale")):
        return fields
    from engine.families.defaults import family_defaults
    from engine.modelfiles import check_model

    defaults = family_defaults(check_model(model))
    for key in ("width", "height", "steps", "guidance_scale"):
        fields.setdefault(key, defaults[key])
    return fields


def _run_and_save(args, request: GenerationRequest, out: str | None, *, embed: bool) -> int:
    from engine.engine import Engine
    from engine.outputs import save_image, save_result
    from engine.paths import data_dir as _data_dir

    engine = Engine(device=args.device, library=_library(args), state_dir=_data_dir(args.data_dir))
    bar = _ProgressBar(request)
    cancel = threading.Event()
    try:
        result = engine.generate(request, on_progress=bar.update, cancel=cancel)
    finally:
        bar.close()
    if out and Path(out).suffix.lower() == ".png":
        target = Path(out)
        if len(result.images) == 1:
            paths = [save_image(result, 0, target, embed_metadata=embed)]
        else:
            paths = [save_image(result, i, target.with_name(f"{target.stem}-{i + 1}{target.suffix}"),
                                embed_metadata=embed) for i in range(len(result.images))]
    elif out:
        paths = save_result(result, Path(out), embed_metadata=embed)
    else:  # into the gallery library (indexed now, or by the open app if it owns the library)
        from engine.cli_gallery import open_library
        from engine.library import SaveFailed

        with open_library(args.data_dir, need_owner=False) as library:
            try:
                entries = library.save(result, embed_metadata=embed)
            except SaveFailed as exc:
                raise EaselError(f"{exc}; nothing partial was left") from None
            paths = [library.absolute(e) for e in entries]
    for path, seed in zip(paths, result.seeds):
        print(f"{path}  (seed {seed})")
    for notice in result.notices:
        print(f"easel: note: {notice}", file=sys.stderr)
    t = result.timings
    print(f"{len(paths)} image(s) in {t.total:.1f}s (load {t.load:.1f}s, encode {t.encode:.2f}s, "
          f"denoise {t.denoise:.1f}s, decode {t.decode:.2f}s) on {result.settings.device} "
          f"{result.settings.dtype}, preset {result.settings.preset}", file=sys.stderr)
    return EXIT_OK


class _ProgressBar:
    """A terminal progress bar (tqdm) when stderr is a terminal; silent otherwise."""

    def __init__(self, request: GenerationRequest):
        self._bar = None
        self._enabled = sys.stderr.isatty()
        self._batch = request.batch_count

    def update(self, progress) -> None:
        if not self._enabled:
            return
        from tqdm import tqdm

        if self._bar is None or progress.step == 1:
            if self._bar is not None:
                self._bar.close()
            desc = f"image {progress.image_index + 1}/{self._batch}" if self._batch > 1 else "generating"
            self._bar = tqdm(total=progress.total, desc=desc, unit="step", file=sys.stderr, leave=False)
        self._bar.n = progress.step
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


if __name__ == "__main__":
    sys.exit(main())

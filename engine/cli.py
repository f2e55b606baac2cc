"""The ``easel`` command line: generate, edit, inspect and self-test without the window.

User errors print one line (``easel: ...``) and exit 2; no traceback unless ``--debug``.

The terminal gets that one line and nothing else of the kind: every log record (warnings, a load
failure's traceback) and every Python warning goes to ``<data>/logs/easel-cli.log`` instead, and to
the terminal only with ``--debug``. ``report`` is the one place that writes an error line.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path

from engine import __version__
from engine.api import MEMORY_PRESETS, SAMPLERS, SPEEDS, EaselError, GenerationRequest, ImageError, Mode
from engine.cli_common import (  # noqa: F401 - report, save_or_rescue and load_image are the CLI's public names too
    EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, check_output, is_variations_model, library_for,
    load_image, multiple_of_8, report, resolve_vae, run_and_save, save_or_rescue, with_native_size,
)

_COMMON_DEFAULTS = {"data_dir": None, "device": None, "debug": False}
DEFAULT_SAMPLER = "Euler a"


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

    # What every image job takes (generate, img2img, inpaint, edit); ``gen`` adds the prompt's own options.
    job = argparse.ArgumentParser(add_help=False)
    job.add_argument("--model", required=True, metavar="PATH", help="a .safetensors checkpoint or diffusers folder")
    job.add_argument("--steps", type=int, default=None, help="default: the model's (25; 1 for Turbo models)")
    job.add_argument("--seed", type=int, default=None, help="default: random (recorded in the image)")
    job.add_argument("--width", type=int, default=None)
    job.add_argument("--height", type=int, default=None)
    job.add_argument("--batch", type=int, default=1, help="number of images (seeds seed, seed+1, ...)")
    job.add_argument("--memory", default="auto", choices=MEMORY_PRESETS, help="memory preset")
    job.add_argument("--speed", default="standard", choices=SPEEDS,
                     help="fast: compiled for this device, once (same image); draft: a step cache (quicker, a little rougher)")
    job.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                     help="a folder to look in for the LoRAs, embeddings and VAEs the prompt names (repeatable)")
    job.add_argument("--out", metavar="FILE_OR_DIR", help="a .png file or a folder (default: the gallery, in the outputs folder)")
    job.add_argument("--no-metadata", action="store_true", help="save without prompt/seed/model chunks")

    gen = argparse.ArgumentParser(add_help=False, parents=[job])
    gen.add_argument("--prompt", default=None, metavar="TEXT",
                     help="what to make (required, except for a Stable unCLIP model varying an --init image)")
    gen.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    gen.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS, metavar="NAME",
                     help=f"one of: {', '.join(SAMPLERS)}")
    gen.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's; 0 for Turbo)")
    gen.add_argument("--vae", default="", metavar="PATH_OR_NAME", help="a VAE file (or its name in the model folders) "
                     "to use instead of the model's own")
    gen.add_argument("--clip-skip", type=int, default=1, metavar="N", help="text-encoder layers to skip (A1111 Clip skip)")
    from engine import cli_control

    cli_control.add_options(gen)
    cli_control.add_reference_options(gen)
    cli_control.add_region_options(gen)

    edit = argparse.ArgumentParser(add_help=False)
    edit.add_argument("--init", required=True, metavar="IMAGE", help="the source image")
    edit.add_argument("--strength", type=float, default=None, help="how much to change (0-1]")

    generate = sub.add_parser("generate", parents=[common, gen], help="text to image")
    generate.add_argument("--init", default=None, metavar="IMAGE",
                          help="start from this image (as img2img); for a Stable unCLIP model, the image to vary")
    generate.add_argument("--strength", type=float, default=None,
                          help="with --init: how much to change (0-1]; default 0.75, or 0.35 (subtle) for unCLIP")
    from engine.cli_families import add_hires_arguments  # the hires fix's flags

    add_hires_arguments(generate)
    sub.add_parser("img2img", parents=[common, gen, edit], help="image to image")
    inpaint = sub.add_parser("inpaint", parents=[common, gen, edit], help="regenerate the masked region")
    inpaint.add_argument("--mask", required=True, metavar="MASK", help="white = regenerate, black = keep")
    inpaint.add_argument("--only-masked", action="store_true", help="work on the mask's region at full resolution")
    inpaint.add_argument("--padding", type=int, default=32, metavar="PX", help="context around the mask (only-masked)")
    inpaint.add_argument("--mask-blur", type=int, default=4, metavar="PX", help="feather of the seam")

    # ``easel edit IMAGE "make the sky stormy"``: img2img (or inpaint with --mask) by an instruction editor.
    instruct = sub.add_parser("edit", parents=[common, job], help="edit an image by an instruction "
                              "(an instruction-edit model: FLUX.1 Kontext, FLUX.2, Qwen-Image-Edit)")
    instruct.add_argument("init", metavar="IMAGE", help="the image to edit")
    instruct.add_argument("prompt", metavar="INSTRUCTION", help='what to change, e.g. "make the sky stormy"')
    instruct.add_argument("--mask", default=None, metavar="MASK", help="change only here (white = edit, black = keep)")
    instruct.add_argument("--guidance", "--cfg", dest="cfg", type=float, default=None,
                          help="guidance (default: the model's; 2.5 for FLUX.1 Kontext)")
    instruct.add_argument("--strength", type=float, default=None, help="with --mask: how much may change (0-1], default 1")
    instruct.add_argument("--mask-blur", type=int, default=4, metavar="PX", help="with --mask: feather of the seam")
    instruct.add_argument("--reference", action="append", default=[], metavar="IMAGE",
                          help="a further input image the instruction can name (\"put the hat from image 2 on the "
                          "fox\"): FLUX.2, Qwen-Image-Edit Plus; repeatable, in order")
    # What the shared job code reads that an edit does not ask for.
    instruct.set_defaults(negative="", sampler=DEFAULT_SAMPLER, vae="", clip_skip=1, control=[], only_masked=False,
                          padding=32)

    info = sub.add_parser("info", parents=[common], help="show the generation settings stored in an image")
    info.add_argument("image")
    info.add_argument("--json", action="store_true")

    regen = sub.add_parser("regenerate", parents=[common], help="re-run the request stored in an image")
    regen.add_argument("image")
    regen.add_argument("--model", required=True, metavar="PATH")
    regen.add_argument("--out", required=True, metavar="FILE")
    regen.add_argument("--init", metavar="IMAGE", help="source image, for img2img/inpaint images")
    regen.add_argument("--mask", metavar="MASK", help="mask, for inpaint images (default: the mask stored in IMAGE)")
    regen.add_argument("--reference", action="append", default=[], metavar="IMAGE",
                       help="the reference images IMAGE was edited with, in order (instruction editors)")
    regen.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                       help="a folder to look in for the LoRAs, VAE and control models the image used (repeatable)")
    regen.add_argument("--control-model", action="append", default=[], metavar="NAME_OR_PATH",
                       help="the control model of each stored control input, in order (default: found by name)")
    regen.add_argument("--ip-adapter", default="", metavar="NAME_OR_PATH",
                       help="the IP-Adapter of the stored reference images (default: found by name)")

    from engine import cli_families, cli_gallery, cli_grid, cli_models

    cli_models.add_parser(sub, common)
    cli_control.add_parser(sub, common)

    mk = sub.add_parser("make-test-model", parents=[common], help="write a tiny random-weight model (for tests/demos)")
    mk.add_argument("dest", metavar="DIR", nargs="?")
    mk.add_argument("--list", action="store_true", help="print one line per test model: NAME LAYOUT[,LAYOUT…]")
    mk.add_argument("--family", default="sd15", help="which test model (see --list), e.g. sd15, sdxl, amused, "
                    "deepfloyd-if, unclip, sd-x4-upscaler, realesrgan-compact")
    mk.add_argument("--layout", choices=("diffusers", "single-file", "comfyui", "gguf"),
                    help="how to write it (default: its first layout in --list)")
    mk.add_argument("--single-file", action="store_true", help="the same as --layout single-file")
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
    log_path = setup_logging(args.data_dir, debug=args.debug)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    handler = _COMMANDS[args.command]
    try:
        _check_common(args)
        return handler(args)
    except EaselError as exc:
        if args.debug:
            raise
        logging.getLogger("easel.cli").info("%s failed: %s", args.command, exc, exc_info=True)
        report(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        report("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # an Easel bug, not the user's: one line, details in the log file
        if args.debug:
            raise
        user_error = _as_user_error(exc)
        if user_error is not None:
            logging.getLogger("easel.cli").info("%s failed: %s", args.command, user_error, exc_info=True)
            report(user_error)
            return EXIT_USAGE
        logging.getLogger("easel.cli").error("internal error in %s", args.command, exc_info=True)
        where = f"details in {log_path}" if log_path else "run again with --debug for details"
        report(f"internal error: {type(exc).__name__}: {exc} ({where})")
        return EXIT_FAILED


def _as_user_error(exc: BaseException) -> str | None:
    """One line for an error the user's disk or files caused (full disk, read-only folder, a file
    where a folder should be), or None for a real bug. Shared by every command."""
    from engine.files.space import describe_os_error

    return describe_os_error(exc)


class _LogFile(logging.handlers.RotatingFileHandler):
    """The CLI's log file, opened (and its folder made) only when the first record arrives, so a
    command that logs nothing touches nothing; a folder that cannot be written loses the log, never
    the command."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def setup_logging(data_dir: str | None, *, debug: bool = False) -> Path | None:
    """Route every log record and Python warning to ``<data>/logs/easel-cli.log`` (and to stderr only
    with ``debug``). Returns the log file's path, or None when the data folder cannot be told.
    Main thread, once per command."""
    import logging.handlers  # noqa: F401 - RotatingFileHandler

    from engine import paths

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_easel_cli", False)]:
        root.removeHandler(old)
        old.close()
    logging.raiseExceptions = False  # a log file that cannot be written must not print "Logging error"
    logging.captureWarnings(True)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    handlers: list[logging.Handler] = []
    if debug:
        handlers.append(logging.StreamHandler(sys.stderr))
    log_path = None
    try:
        log_path = paths.data_dir(data_dir, create=False) / "logs" / "easel-cli.log" if data_dir != "" else None
    except Exception:  # noqa: BLE001 - no data folder: no log file; the command itself says what is wrong
        log_path = None
    if log_path is not None:
        handlers.append(_LogFile(log_path, maxBytes=1_000_000, backupCount=3, encoding="utf-8", delay=True))
    handlers.append(logging.NullHandler())  # with no log file, logging's last resort must not print either
    for h in handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        h._easel_cli = True  # type: ignore[attr-defined]
        root.addHandler(h)
    return log_path


def _check_common(args) -> None:
    """The options every command shares, checked before any work: an empty --data-dir or --model is
    a mistake (not "the default"), an unknown --device is named."""
    if args.data_dir == "":
        raise EaselError("--data-dir: give a folder (the value is empty)")
    if getattr(args, "model", None) == "" and args.command not in ("gallery", "models"):  # there: a filter
        raise EaselError("--model: give a .safetensors file or a diffusers folder (the value is empty)")
    if args.device is not None:
        import re

        if not re.fullmatch(r"cpu|mps|cuda(:\d{1,2})?", args.device):
            raise EaselError(f"--device: unknown device {args.device!r}; use cpu, mps, cuda or cuda:N")


# ---------------------------------------------------------------------------------- commands


def _cmd_generate(args) -> int:
    """generate, img2img, inpaint and edit (an instruction editor's img2img, or inpaint with --mask)."""
    instruct = args.command == "edit"
    mode = {"generate": Mode.TXT2IMG, "img2img": Mode.IMG2IMG, "inpaint": Mode.INPAINT,
            "edit": Mode.INPAINT if getattr(args, "mask", None) else Mode.IMG2IMG}[args.command]
    check_output(args, args.out, args.width, args.height, args.batch)  # first: a bad target wastes no time
    if instruct:
        if not args.prompt.strip():
            raise EaselError('edit: say what to change in the image (e.g. "make the sky stormy")')
        from engine.families import instruction_refusal
        from engine.files.probe import check_model

        if refusal := instruction_refusal(check_model(args.model)):
            raise EaselError(refusal)
    from engine.cli_control import parse_spec

    for spec in args.control:  # a mistyped --control is said before any model is read
        parse_spec(spec)
    if mode is Mode.TXT2IMG and args.init:
        mode = Mode.IMG2IMG  # ``generate --init``: an image-conditioned job (unCLIP variations, img2img)
    unclip = is_variations_model(args.model)
    if args.prompt is None and not unclip:
        raise EaselError("--prompt: say what to make (e.g. --prompt \"a lighthouse at dusk\")")
    if unclip and mode is Mode.TXT2IMG:
        raise EaselError("Stable unCLIP makes variations of an image: give one with --init IMAGE, "
                         "or use `easel variations IMAGE`")
    init = load_image(args.init, "init image") if mode is not Mode.TXT2IMG else None
    mask = load_image(args.mask, "mask") if mode is Mode.INPAINT else None
    width, height = args.width, args.height
    if init is not None and not getattr(args, "only_masked", False):
        width = width or multiple_of_8(init.width)
        height = height or multiple_of_8(init.height)
    fields = dict(
        prompt=args.prompt or "",
        negative_prompt=args.negative,
        model=args.model,
        mode=mode,
        seed=args.seed,
        sampler=args.sampler,
        batch_count=args.batch,
        memory_preset=args.memory,
        speed=args.speed,
        clip_skip=args.clip_skip,
        vae=resolve_vae(args.vae, library_for(args)),
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
        # An instruction edit changes what the instruction says, as much as it takes (Kontext's img2img
        # has no strength at all).
        default_strength = 1.0 if mode is Mode.INPAINT or instruct else 0.35 if unclip else 0.75
        fields["strength"] = args.strength if args.strength is not None else default_strength
    if mode is Mode.INPAINT:
        fields.update(only_masked=args.only_masked, mask_padding=args.padding, mask_blur=args.mask_blur)
    fields = with_native_size(fields, args.model)
    from engine.cli_families import hires_fields

    fields.update(hires_fields(args, mode))
    if args.control:
        from engine import cli_control

        fields["controls"] = cli_control.controls_from_args(
            args, library_for(args), (fields["width"], fields["height"]), mask.convert("L") if mask else None)
    if getattr(args, "reference", None):
        from engine import cli_control

        fields["references"] = cli_control.references_from_args(args)
    if getattr(args, "region", None):  # areas with their own prompts
        from engine import cli_control

        fields["regions"] = cli_control.regions_from_args(args)
    request = GenerationRequest(**fields)
    return run_and_save(args, request, args.out, embed=not args.no_metadata)


def _cmd_regenerate(args) -> int:
    from engine.metadata import read_metadata

    check_output(args, args.out, None, None, 1)
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
            from engine.imageprep import source_hash

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
    # An editor's references are recorded by count and hash: give them again (IP-Adapter ones are stored).
    wanted = 0 if meta.fields.get("references") else int(meta.extra.get("Reference images", "0") or 0)
    if wanted and len(args.reference) != wanted:
        raise EaselError(f"{args.image} was made with {wanted} reference image{'s' if wanted != 1 else ''}: "
                         f"give {'them' if wanted != 1 else 'it'} with --reference, in order")
    if args.reference:
        from engine.imageprep import source_hash

        from engine.api import ReferenceInput

        extra["references"] = tuple(ReferenceInput(image=load_image(p, "reference image")) for p in args.reference)
        stored = meta.extra.get("Reference hashes", "").split()
        if stored and [source_hash(r.image)[:10] for r in extra["references"]] != stored:
            print(f"easel: note: the reference images are not the ones {args.image} was made with (their hashes "
                  "differ), so the result will not match", file=sys.stderr)
    vae = meta.fields.get("vae") or meta.extra.get("VAE", "")
    if vae:
        extra["vae"] = resolve_vae(vae, library_for(args))
    if args.control_model:
        import dataclasses

        stored = meta.fields.get("controls", ())
        if len(args.control_model) > len(stored):
            raise EaselError(f"--control-model: {len(args.control_model)} given, but {args.image} has "
                             f"{len(stored)} control input(s)")
        extra["controls"] = tuple(dataclasses.replace(c, model=m) for c, m in zip(stored, args.control_model)) + \
            tuple(stored[len(args.control_model):])
    if getattr(args, "ip_adapter", ""):  # another IP-Adapter file for the stored reference images
        import dataclasses

        extra["references"] = tuple(dataclasses.replace(r, model=args.ip_adapter)
                                    for r in meta.fields.get("references", ()))
    request = meta.to_request(**extra)
    if request.seed is None:
        raise EaselError(f"{args.image}: the stored settings have no seed, so the image cannot be reproduced")
    return run_and_save(args, request.replace(batch_count=1), args.out, embed=True)


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
        if key == "controls":  # one readable line per control input (the image itself stays in the file)
            for i, c in enumerate(value):
                model = f", model {c.model}" + (f" [{c.model_hash}]" if c.model_hash else "") if c.model else ""
                print(f"control {i}: {c.kind}, strength {c.strength:g}, steps {c.start:g}-{c.end:g}{model}, "
                      f"image {c.image.width}x{c.image.height}")
            continue
        if key == "references":  # one readable line per reference image
            for i, r in enumerate(value):
                model = f", IP-Adapter {r.model}" + (f" [{r.model_hash}]" if r.model_hash else "") if r.model else ""
                print(f"reference {i}: weight {r.weight:g}{model}, image {r.image.width}x{r.image.height}")
            continue
        if key == "regions":  # one readable line per region (its mask stays in the file)
            for i, r in enumerate(value, 1):
                weight = f", weight {r.weight:g}" if r.weight != 1 else ""
                print(f"region {i}: {r.prompt}{weight}, mask {r.mask.width}x{r.mask.height}")
            continue
        print(f"{key}: {value}")
    if meta.model_name or meta.model_hash:
        print(f"model: {meta.model_name} [{meta.model_hash}]")
    for key, value in meta.extra.items():
        print(f"{key}: {value}")
    for warning in meta.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def _cmd_make_test_model(args) -> int:
    from engine.families import test_models

    models = test_models()
    if args.list:
        for name, (_family, model) in models.items():
            print(f"{name} {','.join(model.layouts)}")
        return EXIT_OK
    if not args.dest:
        raise EaselError("make-test-model: give the folder to write (DIR), or --list")
    if args.family not in models:
        raise EaselError(f"unknown test model {args.family!r}; choose one of {', '.join(models)} (see --list)")
    _family, model = models[args.family]
    layout = args.layout or ("single-file" if args.single_file else model.layouts[0])
    if layout not in model.layouts:
        raise EaselError(f"{args.family} is written as {', '.join(model.layouts)}, not {layout}")
    print(model.write(Path(args.dest), layout, args.seed))
    return EXIT_OK


def _cmd_selftest(args) -> int:
    from engine.selftest import run_selftest

    return EXIT_OK if run_selftest(device=args.device, out=sys.stdout) else EXIT_FAILED


def _cmd_gallery(args) -> int:
    from engine import cli_gallery

    return cli_gallery.run(args)


def _cmd_models(args) -> int:
    from engine import cli_models

    return cli_models.run(args)


def _cmd_preprocess(args) -> int:
    from engine import cli_control

    return cli_control.run_preprocess(args)


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
    "edit": _cmd_generate,
    "info": _cmd_info,
    "regenerate": _cmd_regenerate,
    "make-test-model": _cmd_make_test_model,
    "models": _cmd_models,
    "preprocess": _cmd_preprocess,
    "selftest": _cmd_selftest,
}


if __name__ == "__main__":
    sys.exit(main())

"""``easel models list | convert | download``: the model library, conversion and downloads from the command line.

All honour ``--data-dir``. ``list`` scans the model folders (and, unless ``--no-defaults``, other
tools' installs and the Hugging Face cache); ``convert`` turns a pickled checkpoint into
``.safetensors`` in a separate, restricted process, after asking; ``download`` fetches a repository
from the Hugging Face hub, or lists suggestions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.api import EaselError
from engine.cli_common import EXIT_OK, EXIT_USAGE


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    models = sub.add_parser("models", parents=[common], help="list, convert or download models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(models))
    mlist = msub.add_parser("list", parents=[common], help="every model in the model folders and other tools' installs")
    mlist.add_argument("--json", action="store_true")
    mlist.add_argument("--folder", action="append", default=[], metavar="DIR", help="also scan DIR (repeatable)")
    mlist.add_argument("--no-defaults", action="store_true",
                       help="skip A1111/ComfyUI/InvokeAI installs and the Hugging Face cache")
    mconv = msub.add_parser("convert", parents=[common], help="convert a pickled .ckpt/.pt to .safetensors")
    mconv.add_argument("file")
    mconv.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    mdl = msub.add_parser("download", parents=[common], help="download a model from the Hugging Face hub")
    mdl.add_argument("repo_id", nargs="?", help="e.g. stabilityai/sd-turbo (leave out to list suggestions)")
    mdl.add_argument("--revision")
    mdl.add_argument("--include", action="append", metavar="PATTERN", help="only files matching (repeatable)")
    mdl.add_argument("--cache-dir", metavar="DIR", help="hub cache folder (default: the shared one)")


def run(args) -> int:
    """Runs on the CLI's main thread."""
    command = getattr(args, "models_command", None)
    if command == "list":
        return _models_list(args)
    if command == "convert":
        return _models_convert(args)
    if command == "download":
        return _models_download(args)
    print("easel models: choose list, convert or download (see easel models --help)", file=sys.stderr)
    return EXIT_USAGE


def _models_list(args) -> int:
    from engine.models import KIND_LABELS, ModelLibrary, configured_folders
    from engine.paths import data_dir

    for folder in args.folder:
        if not Path(folder).expanduser().is_dir():
            raise EaselError(f"{folder}: not a folder")
    root = data_dir(args.data_dir)
    library = ModelLibrary(configured_folders(root) + args.folder, include_defaults=not args.no_defaults, state_dir=root)
    entries = library.scan()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not entries:
        print("no models found (add a folder with --folder DIR)")
        return EXIT_OK
    for e in entries:
        family = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}.get(e.family, e.family or "?")
        label = KIND_LABELS.get(e.kind, e.kind)
        if e.kind == "controlnet" and e.info.variant:
            label = f"{label} ({e.info.variant})"  # the control kind its name says
        line = f"{label:22} {family:5} {_size(e.info.size_bytes):>9}  {e.name}  [{e.source}]"
        if e.reason:
            line += f"\n{'':29}cannot be used: {e.reason}"
        print(line)
    usable = sum(1 for e in entries if e.usable)
    print(f"{len(entries)} file(s), {usable} usable; {len(library.roots())} folder(s) scanned")
    return EXIT_OK


def _models_convert(args) -> int:
    from engine.convert import convert_to_safetensors, target_path

    src = Path(args.file).expanduser()
    if not args.yes:
        if not sys.stdin.isatty():
            raise EaselError("converting reads a pickle file (in a separate, restricted process); "
                             "confirm with --yes")
        answer = input(f"Convert {src.name} to {target_path(src).name}? It is read in a separate process that "
                       "only accepts plain weights. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not converted")
            return EXIT_OK
    print(convert_to_safetensors(src))
    return EXIT_OK


def _models_download(args) -> int:
    from engine.download import SUGGESTED, Download

    if not args.repo_id:
        print("Suggested models (easel models download REPO_ID):")
        for repo, what in SUGGESTED:
            print(f"  {repo:48} {what}")
        return EXIT_OK
    job = Download(args.repo_id, revision=args.revision, include=args.include, cache_dir=args.cache_dir)
    bar = None

    def show(event) -> None:
        nonlocal bar
        if event.kind == "plan":
            print(f"{len(event.files)} file(s), {_size(event.total)} ({_size(event.need)} to fetch)", file=sys.stderr)
            if sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=event.total, unit="B", unit_scale=True, file=sys.stderr)
        elif event.kind == "progress" and bar is not None:
            bar.n = event.done
            bar.refresh()

    try:
        path = job.run(show)
    finally:
        if bar is not None:
            bar.close()
    print(path)
    return EXIT_OK


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"

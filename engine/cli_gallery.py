"""``easel gallery list | rebuild | import``: the gallery library from the command line.

All honour ``--data-dir``. While the Easel app has the library open (it holds the library's lock),
``list`` reads its index as it is and ``import`` copies files in for the app to index; ``rebuild``
needs the library to itself and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from engine.api import EaselError
from engine.files.safe import printable


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    gallery = sub.add_parser("gallery", parents=[common], help="list, search, rebuild or import into the gallery")
    gsub = gallery.add_subparsers(dest="gallery_command", metavar="ACTION", required=True,
                                  parser_class=type(gallery))
    ls = gsub.add_parser("list", parents=[common], help="list the gallery's images, newest first")
    ls.add_argument("--search", default="", metavar="TEXT",
                    help='words in the prompt or negative prompt ("a phrase", -word to exclude, a seed)')
    ls.add_argument("--model", default="", metavar="NAME", help="only images made with this model")
    ls.add_argument("--favourites", action="store_true", help="only favourites")
    ls.add_argument("--size", metavar="WxH", help="only images of this size, e.g. 512x768")
    ls.add_argument("--since", metavar="DATE", help="made on or after DATE (YYYY-MM-DD)")
    ls.add_argument("--until", metavar="DATE", help="made before DATE (YYYY-MM-DD)")
    ls.add_argument("--trash", action="store_true", help="list the trash instead")
    ls.add_argument("--limit", type=int, default=None, metavar="N")
    ls.add_argument("--json", action="store_true", help="one JSON array (absolute paths, all fields)")
    gsub.add_parser("rebuild", parents=[common], help="recreate the index from the image files")
    imp = gsub.add_parser("import", parents=[common], help="copy images (or folders of images) into the gallery")
    imp.add_argument("paths", nargs="+", metavar="PATH")


def open_library(data_dir: str | None, *, need_owner: bool):
    """The data folder's library: owned when possible; read-only if the app owns it (unless
    ``need_owner``, which raises the one-line LibraryLocked error)."""
    from engine.library import Library, LibraryLocked
    from engine.paths import data_dir as resolve_data_dir, library_dir

    root = library_dir(resolve_data_dir(data_dir))
    try:
        return Library(root)
    except LibraryLocked:
        if need_owner:
            raise
        return Library(root, exclusive=False)


def run(args) -> int:
    return {"list": _list, "rebuild": _rebuild, "import": _import}[args.gallery_command](args)


def _date(text: str | None, option: str) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise EaselError(f"{option} {text!r}: give a date as YYYY-MM-DD") from None


def _list(args) -> int:
    from engine.library import Filter

    size = None
    if args.size:
        parts = args.size.lower().replace("×", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise EaselError(f"--size {args.size!r}: give it as WIDTHxHEIGHT, e.g. 512x768")
        size = (int(parts[0]), int(parts[1]))
    flt = Filter(text=args.search, model=args.model, favourites=args.favourites, size=size,
                 since=_date(args.since, "--since"), until=_date(args.until, "--until"), trash=args.trash)
    with open_library(args.data_dir, need_owner=False) as library:
        if library.lock.held:
            library.reconcile()
        else:
            print("easel: the Easel app has this library open; listing its index as it is", file=sys.stderr)
        entries = library.query(flt, args.limit)
        if args.json:
            rows = [{**e.__dict__, "path": str(library.absolute(e)),
                     "created": datetime.fromtimestamp(e.created).isoformat(timespec="seconds")} for e in entries]
            print(json.dumps(rows, indent=2, ensure_ascii=False))
            return 0
        for e in entries:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created))
            prompt = " ".join(e.prompt.split())
            prompt = prompt if len(prompt) <= 70 else prompt[:69] + "…"
            star = "*" if e.favourite else " "
            seed = "" if e.seed is None else str(e.seed)
            print(f"{star} {when}  {e.width}x{e.height}  {seed:>10}  {printable(str(library.absolute(e)))}  "
                  f"{printable(prompt)}")
        if not args.json:
            print(f"{len(entries)} image(s)", file=sys.stderr)
    return 0


def _rebuild(args) -> int:
    with open_library(args.data_dir, need_owner=True) as library:
        report = library.rebuild()
        count = library.index.count()
        print(f"{count} image(s) indexed in {library.root} ({report.seconds:.1f} s)")
        for path in report.unreadable:
            print(f"skipped (not a complete image): {printable(str(path))}", file=sys.stderr)
    return 0


def _import(args) -> int:
    with open_library(args.data_dir, need_owner=False) as library:
        report = library.import_files([Path(p) for p in args.paths])
        for entry in report.added:
            print(printable(str(library.absolute(entry))))
        for path, why in report.skipped:
            print(f"skipped {printable(str(path))}: {why}", file=sys.stderr)
        note = "" if library.lock.held else " (the open Easel window adds them to its gallery)"
        print(f"{len(report.added)} image(s) imported into {library.root}{note}", file=sys.stderr)
        if not report.added and report.skipped:
            raise EaselError("nothing was imported")
    return 0

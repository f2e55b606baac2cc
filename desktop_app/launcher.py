"""The ``easel`` console script.

With no subcommand it opens the desktop app; with one (``easel generate ...``) it hands the whole
argument list to the engine CLI without importing PySide6, so the CLI stays light.
Kept tiny on purpose: everything imported here is paid for before the window appears.
"""

from __future__ import annotations

import sys

_GUI_HELP = """usage: easel [--data-dir DIR] [Qt options]
       easel <command> [options]      (generate, info, selftest, make-test-model, ...; see easel --help-cli)

Without a command, opens the Easel desktop app.
  --data-dir DIR   keep settings, logs and outputs under DIR (default: the platform's data folder)
"""


def _is_gui_invocation(argv: list[str]) -> bool:
    # Qt options start with "-"; a bare first word is an engine subcommand.
    return not argv or argv[0].startswith("-") and argv[0] not in ("--help-cli", "--version")


def _split_gui_args(argv: list[str]) -> tuple[str | None, bool, list[str]] | None:
    """Pull out our own options; the rest goes to QApplication. None means: not a GUI call."""
    data_dir: str | None = None
    smoke = False
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--data-dir":
            data_dir = next(it, None)
            if data_dir is None:
                raise SystemExit("easel: --data-dir needs a folder")
        elif arg.startswith("--data-dir="):
            data_dir = arg.split("=", 1)[1]
        elif arg == "--smoke-test":
            smoke = True
        else:
            rest.append(arg)
    return data_dir, smoke, rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_GUI_HELP, end="")
        return 0
    if not _is_gui_invocation(argv):
        if argv[0] == "--help-cli":
            argv = ["--help"]
        from engine.cli import main as cli_main

        return int(cli_main(argv) or 0)
    data_dir, smoke, qt_args = _split_gui_args(argv)
    from desktop_app.app import run

    return run(qt_args, data_dir=data_dir, smoke_test=smoke)

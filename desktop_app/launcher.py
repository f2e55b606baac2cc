"""The ``easel`` console script.

With no subcommand it opens the desktop app; with one (``easel generate ...``) it hands the whole
argument list to the engine CLI without importing PySide6, so the CLI stays light.
Kept tiny on purpose: everything imported here is paid for before the window appears.
"""

from __future__ import annotations

import gc
import sys

_GUI_HELP = """usage: easel [--data-dir DIR] [Qt options]
       easel <command> [options]      (generate, info, selftest, make-test-model, ...; see easel --help-cli)

Without a command, opens the Easel desktop app.
  --data-dir DIR   keep settings, logs and outputs under DIR (default: the platform's data folder)
"""


_VALUE_OPTIONS = ("--data-dir", "--device")  # global options that take a value
_FLAG_OPTIONS = ("--debug",)


def _first_command(argv: list[str]) -> str | None:
    """The first bare word after the global options (``easel --data-dir D gallery list``)."""
    it = iter(argv)
    for arg in it:
        if arg in _VALUE_OPTIONS:
            next(it, None)
        elif arg.startswith(tuple(f"{o}=" for o in _VALUE_OPTIONS)) or arg in _FLAG_OPTIONS:
            continue
        elif not arg.startswith("-"):
            return arg
        else:
            return None  # a Qt or GUI option: the rest belongs to the window
    return None


def _is_gui_invocation(argv: list[str]) -> bool:
    if argv and argv[0] in ("--help-cli", "--version"):
        return False
    return _first_command(argv) is None


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
    if not smoke:  # the smoke test runs offscreen
        from desktop_app.platform_check import xcb_problem

        problem = xcb_problem()
        if problem:  # before Qt aborts with its own plugin message
            print(problem, file=sys.stderr)
            return 1
    # The start-up makes tens of thousands of objects that live as long as the window (Qt's enums and
    # classes, the widgets): collecting while they are made finds a few hundred garbage objects for ~25 ms.
    # desktop_app.app.run freezes them and turns the collector back on once the window is shown.
    gc.disable()
    from desktop_app import pyside_support

    pyside_support.drop_stale()  # support files written for an older PySide: gone before PySide loads
    from desktop_app.app import run

    return run(qt_args, data_dir=data_dir, smoke_test=smoke)


if __name__ == "__main__":
    sys.exit(main())

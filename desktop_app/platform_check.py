"""Before Qt starts on Linux: are the X11 (xcb) libraries Qt's window plugin needs installed?

Without them Qt aborts with its own plugin message ("could not load the Qt platform plugin xcb"),
which does not say what to install. Checked by asking the dynamic loader for each library by its
soname, the way Qt's plugin will. No Qt import here: this runs before QApplication exists.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable

# soname -> the Debian/Ubuntu package that has it (Qt 6's xcb platform plugin needs all of them).
XCB_LIBRARIES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}


def uses_xcb(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether Qt will open the window through its xcb (X11) plugin here."""
    env = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        # "offscreen:configfile=...", "wayland;xcb": the first one Qt tries decides.
        return chosen.split(";")[0].split(":")[0].strip() == "xcb"
    # Qt 6 picks Wayland in a Wayland session; everywhere else it is xcb.
    return not (env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE", "wayland") == "wayland")


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_xcb_packages(loads: Callable[[str], bool] = _loads) -> list[str]:
    """The Debian packages whose libraries the loader cannot find (empty when all are there)."""
    return [package for soname, package in XCB_LIBRARIES.items() if not loads(soname)]


def xcb_problem(environ: dict[str, str] | None = None, loads: Callable[[str], bool] = _loads) -> str | None:
    """One plain line saying what to install, or None when the window can open (or xcb is not used)."""
    if not uses_xcb(environ):
        return None
    missing = missing_xcb_packages(loads)
    if not missing:
        return None
    return ("easel: the window needs Qt's X11 libraries, and some are not installed. On Debian or Ubuntu: "
            f"sudo apt install {' '.join(missing)}")

"""PySide's support code as plain files, so Python keeps its bytecode between launches.

Every ``import PySide6`` runs about 130 KB of shiboken's own Python (the signature loader and parser).
A pip-installed PySide keeps it in a zip embedded in ``Shiboken.abi3.so`` and compiles it from source on
every start: about 40 ms of each launch here (bench/bench_app_startup.py). When a folder
``shiboken6/files.dir`` holds the same files, shiboken imports them from there instead (its own
"incarnated" layout, the one ``SBK_EMBED=0`` makes), and Python caches their bytecode like any module.

Easel writes that folder once, after its first window closes, and stamps it with the shiboken build it
came from; ``drop_stale`` (called by the launcher before PySide is imported) removes a folder Easel wrote
for another build, so a PySide upgrade never runs old support code. A folder someone else made (no
stamp) is left alone. Frozen bundles and read-only installs are skipped.

Kept light: the launcher imports this before the window exists; zipfile and py_compile load only to write.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.util import find_spec

log = logging.getLogger(__name__)

FOLDER = "files.dir"  # the name shiboken6's signature_bootstrap looks for beside shiboken6/__init__.py
STAMP = "easel-shiboken-build"


def shiboken_dir() -> str | None:
    """The installed shiboken6 package folder, found without importing it."""
    if getattr(sys, "frozen", False):
        return None
    try:
        spec = find_spec("shiboken6")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return os.path.dirname(spec.origin)


def build_stamp(package: str) -> str | None:
    """Names the shiboken build: the name, size and modification time of each of its binaries.

    pip writes them anew on every install, so an upgrade (or a reinstall) changes the stamp."""
    try:
        binaries = sorted(
            f"{e.name} {e.stat().st_size} {e.stat().st_mtime_ns}" for e in os.scandir(package)
            if "shiboken" in e.name.lower() and not e.name.endswith((".py", ".pyi")) and e.is_file()
        )
    except OSError:
        return None
    return "; ".join(binaries) or None


def _read_stamp(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, STAMP), encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, ValueError):  # unreadable, or not text
        return None


def drop_stale(package: str | None = None) -> bool:
    """Before PySide is imported: remove a support folder Easel wrote for another shiboken build.

    Returns True when one was removed."""
    package = package if package is not None else shiboken_dir()
    if package is None:
        return False
    folder = os.path.join(package, FOLDER)
    written = _read_stamp(folder)
    if written is None or written == build_stamp(package):
        return False  # none, not Easel's, or current
    import shutil

    try:
        shutil.rmtree(folder)
    except OSError as exc:
        log.warning("could not remove PySide's support files from an older build (%s): %s", folder, exc)
        return False
    return True


def _embedded_zip():
    """The zip of support files shiboken imported from, when it used its embedded copy."""
    module = sys.modules.get("shibokensupport")
    zfile = getattr(getattr(module, "__loader__", None), "zfile", None)
    import zipfile

    return zfile if isinstance(zfile, zipfile.ZipFile) else None


def write(package: str | None = None, zfile=None) -> bool:
    """Write the support files (with their bytecode) as ``files.dir``, once. Returns True when written.

    The folder is built under a temporary name and renamed into place, so a launch that starts
    meanwhile sees either no folder or a whole one. Any failure leaves things as they were."""
    package = package if package is not None else shiboken_dir()
    if package is None or os.path.exists(os.path.join(package, FOLDER)) or not os.access(package, os.W_OK):
        return False
    zfile = zfile if zfile is not None else _embedded_zip()
    stamp = build_stamp(package)
    if zfile is None or stamp is None:
        return False
    import py_compile
    import shutil
    from importlib.util import cache_from_source

    temp = os.path.join(package, f".{FOLDER}.{os.getpid()}")
    try:
        names = [n for n in zfile.namelist() if n.endswith(".py")]
        zfile.extractall(temp, members=names)
        for name in names:
            source = os.path.join(temp, *name.split("/"))
            py_compile.compile(source, cfile=cache_from_source(source), doraise=True)
        with open(os.path.join(temp, STAMP), "w", encoding="utf-8") as f:
            f.write(stamp + "\n")
        os.rename(temp, os.path.join(package, FOLDER))
    except Exception as exc:  # only a cache: another launch won the rename, no room, an odd zip
        log.debug("PySide's support files were not written: %s", exc)
        shutil.rmtree(temp, ignore_errors=True)
        return False
    log.info("wrote PySide's support files as %s (later launches skip compiling them)", os.path.join(package, FOLDER))
    return True

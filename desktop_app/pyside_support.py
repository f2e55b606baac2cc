"""PySide's support code as plain files, so Python keeps its bytecode between launches.

Every ``import PySide6`` runs about 130 KB of shiboken's own Python (the signature loader and parser).
A pip-installed PySide keeps it in a zip embedded in shiboken's binary and compiles it from source on
every start: 40-60 ms of each launch on the 2-core machine (BENCHMARKS.md, session 10). When a folder
``shiboken6/files.dir`` holds the same files, shiboken imports them from there instead (its own
"incarnated" layout, the one ``SBK_EMBED=0`` makes), and Python caches their bytecode like any module.

Easel writes that folder once, after its first window closes, and stamps it with the shiboken build it
came from; ``drop_stale`` (called by the launcher before PySide is imported) removes a folder Easel wrote
for another build, so a PySide upgrade never runs old support code. A folder someone else made (no
stamp) is left alone. Read-only installs are skipped; a frozen bundle gets the folder at build time
(``export``, from packaging/easel.spec) and is never written to.

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


def support_sources() -> dict[str, bytes] | None:
    """The support code this process's shiboken runs, as {path in the zip: source}.

    From its embedded zip, or from the ``files.dir`` it imported them from instead. None when
    PySide is not imported, or when shiboken keeps them some other way (another PySide layout)."""
    module = sys.modules.get("shibokensupport")
    zfile = getattr(getattr(module, "__loader__", None), "zfile", None)
    if zfile is not None:
        import zipfile

        if not isinstance(zfile, zipfile.ZipFile):
            return None
        return {n: zfile.read(n) for n in zfile.namelist() if n.endswith(".py")}
    origin = getattr(module, "__file__", None)  # files.dir/shibokensupport/__init__.py
    if not origin or os.path.basename(os.path.dirname(os.path.dirname(origin))) != FOLDER:
        return None
    root = os.path.dirname(os.path.dirname(origin))
    sources = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    sources[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    return sources


def _materialise(folder: str, sources: dict[str, bytes], invalidation_mode=None) -> None:
    """Write ``sources`` under ``folder``, each with its compiled bytecode beside it in __pycache__."""
    import py_compile
    from importlib.util import cache_from_source

    for name, data in sources.items():
        path = os.path.join(folder, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        py_compile.compile(path, cfile=cache_from_source(path), doraise=True, invalidation_mode=invalidation_mode)


def write(package: str | None = None, sources: dict[str, bytes] | None = None) -> bool:
    """Write the support files (with their bytecode) as ``files.dir``, once. Returns True when written.

    The folder is built under a temporary name and renamed into place, so a launch that starts
    meanwhile sees either no folder or a whole one. Any failure leaves things as they were."""
    package = package if package is not None else shiboken_dir()
    if package is None or os.path.exists(os.path.join(package, FOLDER)) or not os.access(package, os.W_OK):
        return False
    sources = sources if sources is not None else support_sources()
    stamp = build_stamp(package)
    if not sources or stamp is None:
        return False
    import shutil

    temp = os.path.join(package, f".{FOLDER}.{os.getpid()}")
    try:
        _materialise(temp, sources)
        with open(os.path.join(temp, STAMP), "w", encoding="utf-8") as f:
            f.write(stamp + "\n")
        os.rename(temp, os.path.join(package, FOLDER))
    except Exception as exc:  # only a cache: another launch won the rename, no room, an odd file
        log.debug("PySide's support files were not written: %s", exc)
        shutil.rmtree(temp, ignore_errors=True)
        return False
    log.info("wrote PySide's support files as %s (later launches skip compiling them)", os.path.join(package, FOLDER))
    return True


def export(target: str) -> str:
    """For the bundle (packaging/easel.spec): this PySide's support files, compiled, as folder ``target``.

    The bytecode is marked to be used without comparing it with its source's time: a bundle's files
    never change, and copying them into the bundle need not keep their times."""
    import py_compile
    import shutil

    sources = support_sources()
    if not sources:
        raise RuntimeError("PySide6 is not imported, or keeps its support code in a way Easel does not know")
    shutil.rmtree(target, ignore_errors=True)
    _materialise(target, sources, py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return target

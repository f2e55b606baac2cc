"""Run a command the way a user without Python and without a network would: the proof for the bundle.

    python packaging/offline.py dist/easel/easel selftest
    python packaging/offline.py dist/easel/easel --smoke-test

Linux only. The command runs in new network and mount namespaces (``unshare``): the network namespace
has only a loopback device, and in the mount namespace every Python installation this machine has
(this interpreter's prefix, pyenv, /usr/lib/python3*, /usr/local/lib/python3*, the python executables
and libpython files) is covered by an empty tmpfs or /dev/null. PATH is an empty folder and every
PYTHON* variable is unset, so the bundle can lean on nothing but itself. As root this uses plain
namespaces; otherwise a user namespace (``unshare -r``), which most distributions allow.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

# Variables a frozen app must not see: anything that could point it at another Python.
_DROP_PREFIXES = ("PYTHON", "PYENV", "VIRTUAL_ENV", "CONDA", "LD_LIBRARY_PATH", "LD_PRELOAD")


class OfflineUnavailable(RuntimeError):
    """This machine cannot make the namespaces (no unshare, or not permitted)."""


def python_installations() -> tuple[list[str], list[str]]:
    """(folders, files) holding a Python interpreter or its standard library on this machine."""
    folders: set[str] = set()
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        if prefix not in ("/usr", "/usr/local", "/"):
            folders.add(prefix)
    for pattern in ("/usr/lib/python3*", "/usr/local/lib/python3*", "/usr/lib64/python3*", "/opt/conda",
                    "/root/.pyenv", os.path.expanduser("~/.pyenv"), "/opt/homebrew", "/usr/lib/python2*"):
        folders.update(p for p in glob.glob(pattern) if os.path.isdir(p))
    files: set[str] = set()
    for pattern in ("/usr/bin/python*", "/usr/local/bin/python*", "/bin/python*",
                    "/usr/lib/*/libpython3*", "/usr/lib/libpython3*", "/usr/local/lib/libpython3*"):
        files.update(p for p in glob.glob(pattern) if os.path.isfile(p) and not os.path.islink(p))
    # Covering a folder inside another covered folder is unnecessary (and the inner one vanishes first).
    outer = sorted(folders, key=len)
    kept = [f for i, f in enumerate(outer) if not any(f.startswith(o.rstrip("/") + "/") for o in outer[:i])]
    return kept, sorted(f for f in files if not any(f.startswith(o + "/") for o in kept))


def offline_env(extra: dict[str, str] | None = None, home: str | None = None) -> dict[str, str]:
    """A minimal environment: empty PATH folder, no PYTHON* variables, offscreen Qt."""
    empty_bin = tempfile.mkdtemp(prefix="easel-empty-path-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    env.update({"PATH": empty_bin, "QT_QPA_PLATFORM": "offscreen", "LANG": env.get("LANG", "C.UTF-8")})
    if home:
        env["HOME"] = home
        for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "HF_HOME"):
            env.pop(key, None)
    env.update(extra or {})
    return env


def offline_argv(argv: list[str]) -> list[str]:
    """``argv`` wrapped so that it runs with no network and no Python installation visible."""
    unshare = shutil.which("unshare")
    mount = shutil.which("mount") or "/bin/mount"
    shell = shutil.which("sh") or "/bin/sh"
    if sys.platform != "linux" or unshare is None:
        raise OfflineUnavailable("needs Linux with util-linux's unshare")
    folders, files = python_installations()
    script = ["set -e"]
    script += [f"{shlex.quote(mount)} -t tmpfs -o size=1m,ro easel-no-python {shlex.quote(d)}" for d in folders]
    script += [f"{shlex.quote(mount)} --bind /dev/null {shlex.quote(f)}" for f in files]
    script.append('exec "$@"')
    user_ns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [unshare, *user_ns, "--net", "--mount", "--fork", shell, "-c", "\n".join(script), "easel-offline", *argv]


def check_available() -> None:
    """Raise OfflineUnavailable unless the namespaces can be made here."""
    try:
        argv = offline_argv(["/bin/true"])
    except OfflineUnavailable:
        raise
    done = subprocess.run(argv, capture_output=True, text=True, env=offline_env(), timeout=60)
    if done.returncode != 0:
        raise OfflineUnavailable(f"unshare failed: {(done.stderr or done.stdout).strip()[-300:]}")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    try:
        check_available()
    except OfflineUnavailable as exc:
        print(f"offline.py: {exc}", file=sys.stderr)
        return 2
    exe = os.path.abspath(argv[0]) if os.sep in argv[0] else argv[0]
    return subprocess.run(offline_argv([exe, *argv[1:]]), env=offline_env()).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

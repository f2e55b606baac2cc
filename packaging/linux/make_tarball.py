"""Linux installer: a tar.gz holding the bundle, a per-user install.sh, a menu entry and the icon.

    dist/easel-<version>-linux-<arch>-<torch>.tar.gz
      easel-<version>/
        install.sh  uninstall.sh  VERSION  README.txt
        share/easel.desktop  share/easel.svg  share/easel.png
        app/                   the PyInstaller bundle (runs in place too: ./app/easel)

Called by packaging/build.py; uses the system ``tar`` and ``gzip`` (much faster than Python's tarfile
on a 1 GB tree).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent

README = """\
{name} {version} for Linux ({arch}, torch {torch})

Install for this user (no root, no Python needed):
    ./install.sh
It copies the app to ~/.local/lib/easel, adds `easel` to ~/.local/bin and an entry to the
applications menu. Run it again from a newer archive to upgrade.

Or run it in place without installing:
    ./app/easel

Uninstall: ~/.local/lib/easel/uninstall.sh (your settings, models and images are kept).
"""


def desktop_entry(meta) -> str:
    """The menu entry; install.sh fills in Exec/TryExec with the installed path."""
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        f"Name={meta.display_name}",
        "GenericName=Image Studio",
        f"Comment={meta.description}",
        "Exec=@EXEC@",
        "TryExec=@EXEC@",
        f"Icon={meta.executable}",
        "Terminal=false",
        "Categories=Graphics;2DGraphics;RasterGraphics;",
        "Keywords=stable diffusion;image;generate;inpaint;",
        "StartupNotify=true",
        "",
    ])


def make(meta, bundle: Path, dist: Path, torch: str) -> Path:
    """Stage the installer folder next to the bundle and pack it; returns the .tar.gz path."""
    arch = platform.machine()
    top = f"{meta.executable}-{meta.version}"
    stage_root = dist / ".tarball-stage"
    shutil.rmtree(stage_root, ignore_errors=True)
    stage = stage_root / top
    (stage / "share").mkdir(parents=True)
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy2(HERE / script, stage / script)
        (stage / script).chmod(0o755)
    (stage / "VERSION").write_text(meta.version + "\n", encoding="utf-8")
    (stage / "README.txt").write_text(
        README.format(name=meta.display_name, version=meta.version, arch=arch, torch=torch), encoding="utf-8")
    (stage / "share" / f"{meta.executable}.desktop").write_text(desktop_entry(meta), encoding="utf-8")
    shutil.copy2(meta.icon, stage / "share" / f"{meta.executable}.svg")
    shutil.copy2(bundle.parent.parent / "build" / "icons" / f"{meta.executable}.png", stage / "share" / f"{meta.executable}.png")
    # A symlink to the bundle would be packed as a link: move it in, and back out afterwards.
    app = stage / "app"
    bundle.rename(app)
    out = dist / f"{top}-linux-{arch}-{torch}.tar.gz"
    try:
        subprocess.run(["tar", "-C", str(stage_root), "--owner=0", "--group=0", "-czf", str(out), top], check=True)
    finally:
        app.rename(bundle)
        shutil.rmtree(stage_root, ignore_errors=True)
    return out

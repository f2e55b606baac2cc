"""Build the Easel bundle (PyInstaller, one folder) and, on Linux, the per-user tar.gz installer.

    python packaging/build.py [--clean] [--no-installer]

Writes dist/easel/ (dist/Easel.app on macOS), dist/easel-<version>-linux-<arch>-<torch>.tar.gz on
Linux, and build/bundle-report.json with the size and build time. Needs the runtime dependencies
plus the ``packaging`` extra (``pip install -e ".[packaging]"``); the torch installed in this Python
is the torch the bundle carries (CPU or CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import appmeta  # noqa: E402

ROOT = appmeta.ROOT
BUILD = ROOT / "build"
DIST = ROOT / "dist"
WORK = BUILD / "pyinstaller"
REPORT = BUILD / "bundle-report.json"


def bundle_dir(meta: appmeta.AppMeta) -> Path:
    """The folder to ship: dist/<executable>/ (dist/<Name>.app on macOS)."""
    if sys.platform == "darwin":
        return DIST / f"{meta.display_name}.app"
    return DIST / meta.executable


def bundle_executable(meta: appmeta.AppMeta) -> Path:
    """The command-line executable inside the bundle."""
    if sys.platform == "win32":
        return DIST / meta.executable / f"{meta.executable}-cli.exe"
    return DIST / meta.executable / meta.executable


def folder_size(path: Path) -> tuple[int, int]:
    total = files = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
            files += 1
    return total, files


def torch_variant() -> str:
    """'cpu', 'cu128', 'cuda' ...: the torch build this bundle carries (read from metadata, no import)."""
    from importlib.metadata import distribution

    dist = distribution("torch")
    local = dist.version.partition("+")[2]  # PyTorch's own wheels: 2.13.0+cpu, 2.13.0+cu128
    if local:
        return local
    # PyPI's Linux wheel pulls CUDA from nvidia-* packages; its Windows and macOS wheels are CPU (+MPS).
    return "cuda" if any(r.startswith("nvidia-") for r in dist.requires or []) else "cpu"


def write_windows_version_file(meta: appmeta.AppMeta, path: Path) -> None:
    """The version resource PyInstaller embeds in the .exe files (Explorer's Details tab)."""
    nums = tuple(int(x) for x in (meta.version.split(".") + ["0", "0", "0"])[:4] if x.isdigit())
    nums = (nums + (0, 0, 0, 0))[:4]
    path.write_text(
        f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={nums}, prodvers={nums}),
  kids=[StringFileInfo([StringTable('040904B0', [
    StringStruct('CompanyName', {meta.publisher!r}),
    StringStruct('FileDescription', {meta.display_name!r}),
    StringStruct('FileVersion', {meta.version!r}),
    StringStruct('ProductName', {meta.display_name!r}),
    StringStruct('ProductVersion', {meta.version!r})])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])]
)
""",
        encoding="utf-8",
    )


def iscc_defines(meta: appmeta.AppMeta, torch: str) -> list[str]:
    """The /D options packaging/windows/easel.iss expects, from pyproject.toml."""
    return [f"/DAppName={meta.display_name}", f"/DAppVersion={meta.version}", f"/DAppPublisher={meta.publisher}",
            f"/DAppGuid={meta.windows_app_id.strip('{}')}", f"/DTorchVariant={torch}"]


def find_iscc() -> str | None:
    found = shutil.which("ISCC") or shutil.which("iscc")
    if found:
        return found
    for base in (os.environ.get("ProgramFiles(x86)"), os.environ.get("ProgramFiles"),
                 os.path.join(os.environ.get("LOCALAPPDATA", ""), "Programs")):
        if base and Path(base, "Inno Setup 6", "ISCC.exe").is_file():
            return str(Path(base, "Inno Setup 6", "ISCC.exe"))
    return None


def build_installer(meta: appmeta.AppMeta, target: Path, torch: str) -> Path | None:
    """The platform's installer: Linux tar.gz, Windows Inno Setup .exe, macOS .dmg."""
    if sys.platform.startswith("linux"):
        sys.path.insert(0, str(HERE / "linux"))
        import make_tarball

        return make_tarball.make(meta, target, DIST, torch)
    if sys.platform == "win32":
        iscc = find_iscc()
        if iscc is None:
            print("Inno Setup 6 (ISCC.exe) not found: install it, then run packaging\\build.py again "
                  "(or ISCC with the /D options in packaging\\windows\\easel.iss)", file=sys.stderr)
            return None
        subprocess.run([iscc, "/Q", *iscc_defines(meta, torch), str(HERE / "windows" / "easel.iss")], check=True)
        return DIST / f"{meta.executable}-{meta.version}-windows-x64-{torch}-setup.exe"
    if sys.platform == "darwin":
        subprocess.run(["bash", str(HERE / "macos" / "make_dmg.sh")], check=True)
        return DIST / f"{meta.executable}-{meta.version}-macos-{platform.machine()}.dmg"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="drop PyInstaller's cache and the old bundle first")
    parser.add_argument("--no-installer", action="store_true", help="build the bundle only")
    args = parser.parse_args(argv)
    meta = appmeta.load()
    BUILD.mkdir(exist_ok=True)

    subprocess.run([sys.executable, str(HERE / "make_icons.py"), str(BUILD / "icons")], check=True)
    if sys.platform == "win32":
        write_windows_version_file(meta, BUILD / "windows-version.txt")

    cmd = [sys.executable, "-m", "PyInstaller", str(HERE / "easel.spec"), "--noconfirm",
           "--workpath", str(WORK), "--distpath", str(DIST), "--log-level", "WARN"]
    if args.clean:
        cmd.append("--clean")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    print(f"building {meta.display_name} {meta.version} (torch {torch_variant()}) ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    build_seconds = time.perf_counter() - t0

    target = bundle_dir(meta)
    size, files = folder_size(target)
    exe = bundle_executable(meta)
    shown = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    if shown.returncode != 0 or meta.version not in shown.stdout:
        print(f"the bundle does not start: `{exe.name} --version` gave {shown.returncode}: "
              f"{(shown.stdout + shown.stderr).strip()[-2000:]}", file=sys.stderr)
        return 1
    report = {
        "version": meta.version,
        "platform": f"{sys.platform}-{platform.machine()}",
        "torch": torch_variant(),
        "bundle": str(target.relative_to(ROOT)),
        "size_bytes": size,
        "files": files,
        "build_seconds": round(build_seconds, 1),
    }
    print(f"bundle: {report['bundle']}  {size / 2**30:.2f} GiB in {files} files  "
          f"built in {build_seconds / 60:.1f} min ({build_seconds:.0f} s)  `{exe.name} --version`: {shown.stdout.strip()}")

    if not args.no_installer:
        t1 = time.perf_counter()
        installer = build_installer(meta, target, torch_variant())
        if installer is not None:
            report["installer"] = str(installer.relative_to(ROOT))
            report["installer_bytes"] = installer.stat().st_size
            print(f"installer: {report['installer']}  {installer.stat().st_size / 2**20:.0f} MiB  "
                  f"made in {time.perf_counter() - t1:.0f} s")
    REPORT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

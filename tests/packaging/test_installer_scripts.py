"""The installer pieces, checked without building the bundle (seconds, in the default run).

The Linux install/uninstall scripts run for real against a stand-in bundle in a temporary $HOME;
the Windows Inno Setup script and the macOS dmg script cannot run here, so their paths and
defines are checked against what packaging/build.py and the spec produce.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.packaging import tools

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))
sys.path.insert(0, str(ROOT / "packaging" / "linux"))
import appmeta  # noqa: E402
import build  # noqa: E402
import make_tarball  # noqa: E402

META = appmeta.load()


def test_one_version_everywhere():
    import engine

    assert META.version == engine.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", META.version)
    from importlib.metadata import PackageNotFoundError, version

    try:  # an installed (or editable) easel reports the same number
        installed = version("easel")
    except PackageNotFoundError:
        return
    if Path(engine.__file__).resolve().is_relative_to(ROOT):
        assert installed == META.version


@pytest.fixture
def fake_release(tmp_path: Path) -> Path:
    """A release tar.gz made by the real make_tarball around a stand-in bundle that prints its version."""
    dist = tmp_path / "dist"
    bundle = dist / META.executable
    (bundle / "_internal").mkdir(parents=True)
    exe = bundle / META.executable
    exe.write_text(f'#!/bin/sh\necho "easel {META.version}"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (bundle / "_internal" / "payload.bin").write_bytes(b"x" * 1000)
    icons = tmp_path / "build" / "icons"
    icons.mkdir(parents=True)
    shutil.copy(ROOT / "resources" / "icons" / "easel.svg", icons / "easel.svg")
    (icons / f"{META.executable}.png").write_bytes(b"\x89PNG stand-in")
    tarball = make_tarball.make(META, bundle, dist, "cpu")
    assert bundle.is_dir(), "packing must leave the bundle where it was"
    return tarball


def _unpack(tarball: Path, where: Path) -> Path:
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        assert all(n.split("/")[0] == f"{META.executable}-{META.version}" for n in names)
        tar.extractall(where, filter="tar")
    return where / f"{META.executable}-{META.version}"


def _sh(script: Path, home: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, timeout=60,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin", **env})


def test_tarball_installs_for_one_user_and_uninstalls_keeping_data(fake_release, tmp_path):
    top = _unpack(fake_release, tmp_path / "unpacked")
    assert (top / "app" / META.executable).is_file() and (top / "README.txt").is_file()
    home = tmp_path / "home with space"
    home.mkdir()
    done = _sh(top / "install.sh", home)
    assert done.returncode == 0, done.stderr
    assert f"Easel {META.version} is installed" in done.stdout

    dest = home / ".local" / "lib" / "easel"
    launcher = home / ".local" / "bin" / "easel"
    desktop = home / ".local" / "share" / "applications" / "easel.desktop"
    assert subprocess.run([str(launcher)], capture_output=True, text=True).stdout.strip() == f"easel {META.version}"
    entry = desktop.read_text()
    assert f'Exec="{dest}/app/easel"' in entry  # quoted: the path has a space
    assert f"TryExec={dest}/app/easel" in entry and "@EXEC@" not in entry

    # Upgrading over an install replaces the app and leaves no staging folders behind.
    (dest / "app" / "_internal" / "stale-from-old-version").write_text("old")
    assert _sh(top / "install.sh", home).returncode == 0
    assert not (dest / "app" / "_internal" / "stale-from-old-version").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["VERSION", "app", "installed-files", "uninstall.sh"]

    data = home / ".local" / "share" / "Easel"
    data.mkdir(parents=True)
    (data / "settings.json").write_text("{}")
    done = _sh(dest / "uninstall.sh", home)
    assert done.returncode == 0, done.stderr
    assert not dest.exists() and not desktop.exists() and not launcher.is_symlink()
    assert not (home / ".local/share/icons/hicolor/scalable/apps/easel.svg").exists()
    assert (data / "settings.json").read_text() == "{}"
    assert str(data) in done.stdout


def test_install_refuses_a_partial_archive_and_changes_nothing(fake_release, tmp_path):
    top = _unpack(fake_release, tmp_path / "unpacked")
    shutil.rmtree(top / "app")
    home = tmp_path / "home"
    home.mkdir()
    done = _sh(top / "install.sh", home)
    assert done.returncode == 1
    assert "unpack the whole archive" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (home / ".local").exists()


def test_uninstall_leaves_a_foreign_launcher_alone(fake_release, tmp_path):
    top = _unpack(fake_release, tmp_path / "unpacked")
    home = tmp_path / "home"
    home.mkdir()
    assert _sh(top / "install.sh", home).returncode == 0
    launcher = home / ".local" / "bin" / "easel"
    launcher.unlink()
    launcher.symlink_to("/usr/bin/true")  # since replaced by another program's 'easel'
    assert _sh(home / ".local" / "lib" / "easel" / "uninstall.sh", home).returncode == 0
    assert launcher.is_symlink() and str(launcher.readlink()) == "/usr/bin/true"


def test_the_installed_desktop_entry_passes_desktop_file_validate(fake_release, tmp_path):
    validate = tools.require("desktop-file-validate")
    top = _unpack(fake_release, tmp_path / "unpacked")
    home = tmp_path / "home with space"
    home.mkdir()
    assert _sh(top / "install.sh", home).returncode == 0
    desktop = home / ".local" / "share" / "applications" / "easel.desktop"
    check = subprocess.run([validate, str(desktop)], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr
    # The validator does judge: the same entry without its Type line is refused.
    broken = tmp_path / "broken.desktop"
    broken.write_text("".join(l for l in desktop.read_text().splitlines(True) if not l.startswith("Type=")))
    assert subprocess.run([validate, str(broken)], capture_output=True, text=True).returncode != 0


def test_shell_scripts_pass_shellcheck(tmp_path):
    shellcheck = tools.require("shellcheck")
    scripts = [ROOT / "packaging/linux/install.sh", ROOT / "packaging/linux/uninstall.sh",
               ROOT / "packaging/macos/make_dmg.sh", ROOT / ".ci/run"]
    done = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    # shellcheck does judge: an unquoted path (it breaks on the spaces in "home with space") is flagged.
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/bin/sh\ndest=$1\nrm -rf $dest/app\n')
    flagged = subprocess.run([shellcheck, str(bad)], capture_output=True, text=True)
    assert flagged.returncode != 0 and "SC2086" in flagged.stdout


def _iss_defines_used(text: str) -> set[str]:
    return set(re.findall(r"\{#(\w+)\}", text))


def test_inno_setup_script_matches_the_bundle_and_build_script():
    iss_path = ROOT / "packaging" / "windows" / "easel.iss"
    iss = iss_path.read_text(encoding="utf-8")
    passed = {d[2:].split("=", 1)[0] for d in build.iscc_defines(META, "cpu")}
    defined = set(re.findall(r"#define\s+(\w+)", iss))
    missing = _iss_defines_used(iss) - passed - defined
    assert not missing, f"used in easel.iss but never defined: {missing}"
    assert "/DAppGuid=" + META.windows_app_id.strip("{}") in build.iscc_defines(META, "cpu")
    assert re.fullmatch(r"\{[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\}", META.windows_app_id)
    assert "AppId={{{#AppGuid}}" in iss  # "{{" is Inno's escaped brace: AppId={GUID}

    # Paths in the script are relative to it: they must land on build.py's outputs.
    bundle = re.search(r'#define BundleDir "([^"]+)"', iss).group(1).replace("\\", "/")
    icon = re.search(r'#define IconFile "([^"]+)"', iss).group(1).replace("\\", "/")
    out = re.search(r"^OutputDir=(.+)$", iss, re.M).group(1).strip().replace("\\", "/")
    assert (iss_path.parent / bundle).resolve() == (build.DIST / META.executable).resolve()
    assert (iss_path.parent / icon).resolve() == (build.BUILD / "icons" / f"{META.executable}.ico").resolve()
    assert (iss_path.parent / out).resolve() == build.DIST.resolve()

    # Per-user (no admin), a Start menu entry for the windowed exe the spec builds, an uninstaller icon.
    assert re.search(r"^PrivilegesRequired=lowest$", iss, re.M)
    assert re.search(r'^Name: "\{autoprograms\}\\\{#AppName\}"; Filename: "\{app\}\\\{#AppExe\}"', iss, re.M)
    assert '#define AppExe AppName + ".exe"' in iss
    spec = (ROOT / "packaging" / "easel.spec").read_text(encoding="utf-8")
    assert "_exe(META.display_name, console=False)" in spec


def test_icons_render_for_every_platform(tmp_path):
    import make_icons
    from PIL import Image

    assert make_icons.main([str(tmp_path)]) == 0
    ico = Image.open(tmp_path / f"{META.executable}.ico")
    assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    icns = Image.open(tmp_path / f"{META.executable}.icns")
    assert icns.size == (1024, 1024)
    png = Image.open(tmp_path / f"{META.executable}.png").convert("RGBA")
    assert png.size == (256, 256)
    alpha = png.getchannel("A")
    assert alpha.getextrema() == (0, 255)  # transparent corners, opaque drawing: not a blank square

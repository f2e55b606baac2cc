"""The bundled app runs with no network and no Python, and its Linux installer installs per user.

Marked ``packaging`` (left out of the default run): building takes several minutes.

    python -m pytest -m packaging tests/packaging -q                   # builds, then tests
    EASEL_BUNDLE=dist/easel/easel python -m pytest -m packaging tests/packaging -q   # reuse a build

The build also writes the tar.gz installer (dist/easel-*.tar.gz) that the installer test uses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from tests.packaging import tools

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))
import appmeta  # noqa: E402
import offline  # noqa: E402

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bundle proof runs on Linux"),
]

META = appmeta.load()


@pytest.fixture(scope="module")
def bundle_exe() -> Path:
    """The bundle's executable: $EASEL_BUNDLE, or a fresh build (packaging/build.py)."""
    prebuilt = os.environ.get("EASEL_BUNDLE")
    if prebuilt:
        exe = Path(prebuilt).resolve()
        assert exe.is_file(), f"EASEL_BUNDLE={prebuilt} is not a file"
        return exe
    subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py")], check=True, cwd=ROOT, timeout=3600)
    exe = ROOT / "dist" / META.executable / META.executable
    assert exe.is_file()
    return exe


@pytest.fixture(scope="module")
def offline_ok() -> None:
    try:
        offline.check_available()
    except offline.OfflineUnavailable as exc:
        pytest.skip(f"cannot cut the network off here: {exc}")


def run_offline(argv: list[str], home: Path, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(offline.offline_argv([str(a) for a in argv]), env=offline.offline_env(extra_env, str(home)),
                          capture_output=True, text=True, timeout=timeout, cwd=home)


def test_offline_sandbox_has_no_network_and_no_python(offline_ok, tmp_path):
    # The proof below only means something if the sandbox really hides both.
    probe = ("/bin/cat /proc/net/dev; for p in /usr/bin/python3 " + " ".join(offline.python_installations()[0])
             + "; do [ -d \"$p\" ] && /bin/ls -A \"$p\" | /usr/bin/wc -l; [ -f \"$p\" ] && /usr/bin/wc -c < \"$p\"; done; echo PATH=$PATH")
    done = run_offline(["/bin/sh", "-c", probe], tmp_path)
    devices = [line.split(":")[0].strip() for line in done.stdout.splitlines() if ":" in line and "|" not in line
               and not line.startswith("PATH=")]
    assert devices == ["lo"], done.stdout
    counts = [line for line in done.stdout.splitlines() if line.strip().isdigit()]
    assert counts and all(c.strip() == "0" for c in counts), f"a Python installation is still visible:\n{done.stdout}"
    path_dir = done.stdout.split("PATH=")[1].strip()
    assert os.listdir(path_dir) == []


def test_version_comes_from_pyproject(bundle_exe, offline_ok, tmp_path):
    done = run_offline([bundle_exe, "--version"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"easel {META.version}"


def test_bundle_runs_its_modules_like_python_dash_m(bundle_exe, offline_ok, tmp_path):
    # The engine runs downloads and conversions as `[sys.executable, "-m", module]`; in the bundle
    # sys.executable is the app itself, so the app must answer -m like python does.
    done = run_offline([bundle_exe, "-m", "engine.cli", "--version"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"easel {META.version}"


def test_selftest_passes_offline_without_python(bundle_exe, offline_ok, tmp_path):
    done = run_offline([bundle_exe, "selftest"], tmp_path)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    summary = done.stdout.strip().splitlines()[-1]
    passed, total = summary.split()[0].split("/")
    assert passed == total and int(total) >= 7, summary


def test_gui_smoke_test_generates_an_image_offline(bundle_exe, offline_ok, tmp_path):
    data = tmp_path / "data"
    done = run_offline([bundle_exe, "--smoke-test", "--data-dir", data], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke test OK" in done.stdout
    pngs = sorted((data / "outputs").glob("*.png"))
    assert len(pngs) == 1
    image = Image.open(pngs[0])
    assert image.size == (64, 64)
    assert "smoke test" in image.text.get("parameters", "")
    log = (data / "logs" / "easel.log").read_text(encoding="utf-8")
    assert "Traceback" not in log, log[-3000:]


def test_first_run_uses_the_per_user_data_folder(bundle_exe, offline_ok, tmp_path):
    # No --data-dir: a first start in the bundle makes the platform's data folder under $HOME.
    done = run_offline([bundle_exe], tmp_path, timeout=300, EASEL_REPORT_SHOWN="1", EASEL_QUIT_WHEN_SHOWN="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "EASEL_WINDOW_SHOWN" in done.stdout
    data = tmp_path / ".local" / "share" / META.display_name
    assert (data / "logs" / "easel.log").is_file()
    assert (data / "settings.json").is_file()


def _installer() -> Path:
    explicit = os.environ.get("EASEL_INSTALLER")
    if explicit:
        return Path(explicit).resolve()
    report = ROOT / "build" / "bundle-report.json"
    if not report.is_file() or "installer" not in json.loads(report.read_text()):
        pytest.skip("no installer built (packaging/build.py writes it; or set EASEL_INSTALLER)")
    return ROOT / json.loads(report.read_text())["installer"]


def test_linux_tarball_installs_per_user_runs_and_uninstalls(bundle_exe, offline_ok, tmp_path):
    tarball = _installer()
    home = tmp_path / "home"
    home.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path / "unpacked", filter="tar")
    (top,) = (tmp_path / "unpacked").iterdir()
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}

    done = subprocess.run(["/bin/sh", str(top / "install.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    dest = home / ".local" / "lib" / "easel"
    launcher = home / ".local" / "bin" / "easel"
    desktop = home / ".local" / "share" / "applications" / "easel.desktop"
    assert launcher.is_symlink() and launcher.resolve() == (dest / "app" / "easel").resolve()
    assert (home / ".local/share/icons/hicolor/scalable/apps/easel.svg").is_file()
    assert (home / ".local/share/icons/hicolor/256x256/apps/easel.png").is_file()
    entry = desktop.read_text(encoding="utf-8")
    assert f'Exec="{dest}/app/easel"' in entry and "Icon=easel" in entry and f"Name={META.display_name}" in entry
    entry_copy = tmp_path / "easel.desktop"  # validated last, so a missing validator skips nothing else
    shutil.copy(desktop, entry_copy)

    # The installed copy runs offline (through the launcher symlink), with the archive gone.
    shutil.rmtree(tmp_path / "unpacked")
    ran = run_offline([launcher, "--version"], home, timeout=120)
    assert ran.returncode == 0 and ran.stdout.strip() == f"easel {META.version}", ran.stdout + ran.stderr

    # Uninstall removes the app and its entries, and keeps the user's data.
    user_data = home / ".local" / "share" / "Easel"
    user_data.mkdir(parents=True)
    (user_data / "keep.txt").write_text("mine")
    done = subprocess.run(["/bin/sh", str(dest / "uninstall.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not dest.exists() and not launcher.exists() and not launcher.is_symlink() and not desktop.exists()
    assert (user_data / "keep.txt").read_text() == "mine"

    validate = tools.require("desktop-file-validate")  # fails in CI when missing, skips (saying so) elsewhere
    check = subprocess.run([validate, str(entry_copy)], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr

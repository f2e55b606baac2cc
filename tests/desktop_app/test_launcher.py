"""`easel` without a command opens the GUI; with one it runs the engine CLI without Qt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_subcommand_goes_to_the_engine_cli_without_importing_qt():
    code = (
        "import sys\n"
        "from desktop_app.launcher import main\n"
        "try:\n    rc = main(['info', '/no/such/model.safetensors'])\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "print('RESULT', rc, 'PySide6' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))
    _, rc, qt, torch = line.split()
    assert rc != "0" and qt == "False" and torch == "False"
    assert "no such file" in out.stderr


@pytest.mark.parametrize(
    "argv, cli",
    [
        ([], False),
        (["--data-dir", "D"], False),
        (["--data-dir=D", "-platform", "offscreen"], False),
        (["--data-dir", "D", "gallery", "list"], True),
        (["--data-dir=D", "generate", "--prompt", "x"], True),
        (["--device", "cpu", "--debug", "info", "x.png"], True),
        (["gallery", "list", "--data-dir", "D"], True),
        (["--version"], True),
    ],
)
def test_global_options_before_a_command_still_run_the_cli(argv, cli):
    from desktop_app.launcher import _is_gui_invocation

    assert _is_gui_invocation(argv) is (not cli)


def test_gui_help_names_the_data_dir_option(capsys):
    from desktop_app.launcher import main

    assert main(["--help"]) == 0
    assert "--data-dir DIR" in capsys.readouterr().out


def test_window_opens_from_the_command_line_with_a_data_dir(tmp_path):
    env = dict(os.environ, EASEL_REPORT_SHOWN="1", EASEL_QUIT_WHEN_SHOWN="1")
    out = subprocess.run(
        [sys.executable, "-m", "desktop_app", "--data-dir", str(tmp_path / "d")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "EASEL_WINDOW_SHOWN" in out.stdout
    # The window comes first: numpy, Pillow, torch and diffusers load afterwards (numpy alone is ~100 ms).
    assert "EASEL_IMPORTED_BEFORE_SHOWN -" in out.stdout
    # The launcher pauses garbage collection while the window is built, and it is back on once shown.
    assert "EASEL_GC_ENABLED_AFTER_SHOWN True" in out.stdout
    assert (tmp_path / "d" / "logs" / "easel.log").is_file()
    assert (tmp_path / "d" / "settings.json").is_file()
    assert "torch" not in (tmp_path / "d" / "logs" / "easel.log").read_text()  # the engine never started


@pytest.mark.slow
def test_smoke_test_mode_generates_one_image_and_exits_0():
    out = subprocess.run([sys.executable, "-m", "desktop_app", "--smoke-test"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "smoke test OK" in out.stdout


def test_without_qts_x11_libraries_the_window_says_in_one_line_what_to_install():
    from desktop_app.platform_check import XCB_LIBRARIES, xcb_problem

    gone = {"libxcb-cursor.so.0", "libxkbcommon-x11.so.0"}
    line = xcb_problem({"QT_QPA_PLATFORM": "xcb"}, loads=lambda soname: soname not in gone)
    assert line == ("easel: the window needs Qt's X11 libraries, and some are not installed. On Debian or Ubuntu: "
                    "sudo apt install libxcb-cursor0 libxkbcommon-x11-0")
    assert xcb_problem({"QT_QPA_PLATFORM": "xcb"}, loads=lambda soname: True) is None
    # Not xcb: offscreen, or a Wayland session (Qt's choice there), needs none of them.
    assert xcb_problem({"QT_QPA_PLATFORM": "offscreen:configfile=x.json"}, loads=lambda s: False) is None
    assert xcb_problem({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, loads=lambda s: False) is None
    assert xcb_problem({"DISPLAY": ":0"}, loads=lambda s: False) is not None  # X11: Qt's default
    assert len(XCB_LIBRARIES) == 10


def test_the_launcher_stops_before_qt_when_this_machine_lacks_them():
    from desktop_app.platform_check import missing_xcb_packages

    missing = missing_xcb_packages()
    if not missing:
        pytest.skip("every xcb library is installed here: Qt would open a real window")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run([sys.executable, "-c", "import sys\nfrom desktop_app.launcher import main\nsys.exit(main([]))"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "easel: the window needs Qt's X11 libraries, and some are not installed. On Debian or Ubuntu: "
        f"sudo apt install {' '.join(missing)}"]

"""PySide's support code is written once as files (with bytecode), and dropped when PySide changes."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import cache_from_source
from pathlib import Path

import pytest

from desktop_app import pyside_support

ROOT = Path(__file__).resolve().parents[2]


SOURCES = {
    "signature_bootstrap.py": b"X = 1\n",
    "shibokensupport/__init__.py": b"",
    "shibokensupport/signature/loader.py": b"def load():\n    return 'loaded'\n",
}


def _fake_shiboken(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    package = tmp_path / "shiboken6"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "Shiboken.abi3.so").write_bytes(b"\0" * 100)
    return package, dict(SOURCES)


def test_the_support_files_are_written_once_with_their_bytecode(tmp_path):
    package, zfile = _fake_shiboken(tmp_path)
    assert pyside_support.write(str(package), zfile) is True
    folder = package / pyside_support.FOLDER
    loader = folder / "shibokensupport" / "signature" / "loader.py"
    assert loader.read_text() == "def load():\n    return 'loaded'\n"
    for source in (loader, folder / "signature_bootstrap.py", folder / "shibokensupport" / "__init__.py"):
        assert Path(cache_from_source(str(source))).is_file(), source  # later launches load the bytecode
    assert (folder / pyside_support.STAMP).read_text().strip() == pyside_support.build_stamp(str(package))
    assert sorted(p.name for p in package.iterdir()) == ["Shiboken.abi3.so", "__init__.py", "files.dir"]  # no temp
    before = loader.stat().st_mtime_ns
    assert pyside_support.write(str(package), zfile) is False  # there already
    assert loader.stat().st_mtime_ns == before


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    package, zfile = _fake_shiboken(tmp_path)

    def lost_the_race(src, dst):
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(pyside_support.os, "rename", lost_the_race)
    assert pyside_support.write(str(package), zfile) is False
    assert sorted(p.name for p in package.iterdir()) == ["Shiboken.abi3.so", "__init__.py"]


def test_files_written_for_another_pyside_build_are_removed_before_pyside_loads(tmp_path):
    package, zfile = _fake_shiboken(tmp_path)
    pyside_support.write(str(package), zfile)
    assert pyside_support.drop_stale(str(package)) is False  # same build: kept
    assert (package / "files.dir").is_dir()
    (package / "Shiboken.abi3.so").write_bytes(b"\0" * 200)  # pip installed another PySide
    assert pyside_support.drop_stale(str(package)) is True
    assert not (package / "files.dir").exists()
    # A folder Easel did not write (someone ran with SBK_EMBED=0) is theirs: left alone.
    (package / "files.dir" / "shibokensupport").mkdir(parents=True)
    assert pyside_support.drop_stale(str(package)) is False
    assert (package / "files.dir" / "shibokensupport").is_dir()


def test_after_a_launch_pyside_loads_its_support_code_from_the_written_files(tmp_path):
    package = pyside_support.shiboken_dir()
    assert package is not None
    env = dict(os.environ, EASEL_REPORT_SHOWN="1", EASEL_QUIT_WHEN_SHOWN="1", QT_QPA_PLATFORM="offscreen")
    launch = subprocess.run([sys.executable, "-m", "desktop_app", "--data-dir", str(tmp_path / "d")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert launch.returncode == 0, launch.stderr
    folder = Path(package) / pyside_support.FOLDER
    if not (folder / pyside_support.STAMP).is_file():
        assert not os.access(package, os.W_OK) or folder.is_dir()  # read-only install, or someone else's folder
        pytest.skip("PySide's folder is read-only here, or holds a files.dir Easel did not write")
    assert (folder / pyside_support.STAMP).read_text().strip() == pyside_support.build_stamp(package)
    # The signature machinery works from the files: docstrings, and the message for a wrong argument.
    code = ("import sys\n"
            "from PySide6.QtCore import QObject\n"
            "print(QObject.setObjectName.__doc__)\n"
            "try:\n    QObject().setObjectName(1)\nexcept TypeError as e:\n    print(str(e).splitlines()[0])\n"
            "print(sys.modules['shibokensupport.signature.parser'].__file__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    doc, error, parser = out.stdout.split("\n")[:3]
    assert doc == "setObjectName(self, name: str, /) -> None"
    assert "setObjectName" in error
    assert Path(parser).is_relative_to(folder)


def test_this_pysides_support_code_is_found_and_exported_for_the_bundle(tmp_path):
    import PySide6.QtCore  # noqa: F401  (shiboken loads its support code)

    sources = pyside_support.support_sources()  # from the embedded zip or from files.dir, whichever ran
    assert sources is not None
    assert b"def pyside_type_init" in sources["shibokensupport/signature/loader.py"]
    assert "signature_bootstrap.py" in sources and "shibokensupport/signature/parser.py" in sources
    folder = Path(pyside_support.export(str(tmp_path / "files.dir")))
    for name in sources:
        source = folder / name
        assert source.read_bytes() == sources[name]
        pyc = Path(cache_from_source(str(source))).read_bytes()
        # Flags 0b01: hash-based and not checked against the source, so a copy's file times do not matter.
        assert int.from_bytes(pyc[4:8], "little") == 0b01, name

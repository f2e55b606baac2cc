"""The leak guard itself: a test that leaves a QTimer or a QThread running must fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LEAKY = '''
from PySide6.QtCore import QThread, QTimer

keep = []

def test_leaks_a_timer(qapp):
    t = QTimer()
    t.start(1000)
    keep.append(t)

def test_leaks_a_qthread(qapp):
    th = QThread()
    th.start()
    keep.append(th)

def test_clean(qapp):
    t = QTimer()
    t.start(1000)
    t.stop()
'''


def test_guard_fails_tests_that_leave_a_timer_or_thread_running(tmp_path):
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text(LEAKY)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.desktop_app.conftest", str(test_file), "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-o", "addopts="],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    text = out.stdout + out.stderr
    assert "QTimer(s) still active" in text
    assert "QThread(s) still running" in text
    assert "2 passed, 2 errors" in text or "3 passed, 2 errors" in text, text[-1500:]

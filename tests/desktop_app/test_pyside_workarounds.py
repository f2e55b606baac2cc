"""Many signal emits must not abort the interpreter (a PySide6 6.12 refcount bug on CPython 3.11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import desktop_app  # applies the work-around
from PySide6.QtCore import QCoreApplication, QObject, Signal
app = QCoreApplication([])
class Source(QObject):
    changed = Signal(object)
src = Source()
seen = []
src.changed.connect(lambda rect: seen.append(1))
for i in range(%d):
    src.changed.emit((0, 0, i, i))
print("emitted", len(seen))
"""


def test_a_long_painting_session_of_signal_emits_does_not_crash():
    n = 100_000  # a fresh interpreter holds a few thousand references to True: far more emits than that
    proc = subprocess.run([sys.executable, "-c", SCRIPT % n], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"emitted {n}" in proc.stdout

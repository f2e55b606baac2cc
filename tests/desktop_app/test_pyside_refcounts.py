"""PySide6 6.12.0 on CPython 3.11 dropped a reference to True on every emit() reaching a Python slot
and to None on every QModelIndex.data() returning None; a long session (thousands of progress
signals, one scroll through a big gallery) then aborted the interpreter ("bool_dealloc"). The
dependency pin excludes it; this guards the pin: the check runs in a subprocess because the
failure is a hard abort."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from PySide6.QtCore import QCoreApplication, QObject, QStringListModel, Signal
app = QCoreApplication([])
class Source(QObject):
    changed = Signal(int)
source = Source()
source.changed.connect(lambda value: None)
true_refs, none_refs = sys.getrefcount(True), sys.getrefcount(None)
for i in range(20000):
    source.changed.emit(i)
model = QStringListModel(["a"])
missing = model.index(5, 0)
for _ in range(20000):
    model.data(missing)
print(true_refs - sys.getrefcount(True), none_refs - sys.getrefcount(None))
"""


def test_signals_and_model_data_do_not_leak_references_to_singletons():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    lost_true, lost_none = map(int, proc.stdout.split())
    assert lost_true < 100 and lost_none < 100  # a leak loses one per call: 20,000

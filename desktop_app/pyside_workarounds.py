"""Work around reference-count bugs in the PySide6 build we ship against (6.12.0, CPython 3.11).

Measured here: every ``Signal.emit()`` that reaches a slot returns ``True`` without taking a new
reference, and ``QModelIndex.data()`` does the same with ``None``. Each call takes one reference
from the singleton; after a few thousand calls (a long session's progress signals, or one scroll
through a big gallery) CPython frees ``True`` or ``None`` and aborts with "bool_dealloc" /
"none_dealloc". CPython 3.12 made these singletons immortal; on 3.11 we give them a reserve of
references so the leak can never bring them to zero. tests/desktop_app/test_gallery_scale.py and
bench/bench_gallery.py exercise it.
"""

from __future__ import annotations

import sys

_RESERVE = 1 << 40


def pin_singletons() -> None:
    """Give None, True and False a huge reference reserve (CPython < 3.12 only; idempotent)."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12) or getattr(pin_singletons, "done", False):
        return
    import ctypes

    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _RESERVE  # ob_refcnt is a PyObject's first field
    pin_singletons.done = True  # type: ignore[attr-defined]

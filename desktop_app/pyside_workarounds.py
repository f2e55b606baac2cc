"""Work-arounds for bugs in the Qt binding that would otherwise crash the app.

PySide6 6.12 on CPython 3.11: every ``SignalInstance.emit()`` called from Python drops one reference
to ``True`` that it never took (its bool result), and calling a lambda slot can drop references to
``None``. After a few thousand emits the interpreter aborts with "Fatal Python error: bool_dealloc:
deallocating True or False" (a canvas stroke emits once per mouse move, so painting hit it within
seconds). CPython 3.12+ makes these singletons immortal, which is exactly the cure: here we give
``None``, ``True`` and ``False`` a reference count so large that no leak can bring it to zero.
They are never deallocated in a normal process anyway, so this changes nothing else.
"""

from __future__ import annotations

import ctypes
import sys

_PINNED = False


def pin_singletons() -> bool:
    """Make None/True/False effectively immortal on CPython < 3.12. Returns whether it did anything."""
    global _PINNED
    if _PINNED or sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    for obj in (None, True, False):
        # ob_refcnt is the first field of every CPython object.
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    _PINNED = True
    return True

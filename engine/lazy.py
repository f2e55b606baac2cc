"""A module imported on first use, for modules on the desktop app's start-up path.

``np = LazyModule("numpy")`` costs nothing until ``np.<name>`` is first read; then the real module
is imported and its names copied onto the stand-in, so later reads are plain attribute reads.
The window opens before numpy (~60-120 ms to import) is needed: it is first used when an image
reaches the canvas or the engine thread imports torch. Safe from any thread (the import system
serialises the import itself).
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    def __init__(self, name: str):
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attr: str):
        module: ModuleType = importlib.import_module(self.__dict__["_lazy_name"])
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"

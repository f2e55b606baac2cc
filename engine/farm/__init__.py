"""The farm: grid and batch jobs on a Ray cluster (a local one started on demand, or one given by address).

Ray is an optional extra (``pip install -e ".[farm]"``); ``ray_available()`` says whether it is installed,
without importing it. Qt-free.
"""

from __future__ import annotations

import importlib.util

from engine.api import EaselError

RAY_MISSING_HINT = 'The farm needs Ray: install it with  pip install -e ".[farm]"'


class FarmError(EaselError):
    """The farm cannot run (Ray missing, no cluster at the address, the head node lost): one plain line."""


def ray_available() -> bool:
    """Whether Ray is installed (checked without importing it: importing Ray takes seconds). Any thread."""
    return importlib.util.find_spec("ray") is not None

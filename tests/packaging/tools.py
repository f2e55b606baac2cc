"""System tools the packaging tests check files with (shellcheck, desktop-file-validate).

In CI (the ``CI`` environment variable set, as CI services and ``.ci/run`` do) a missing tool fails the
test: a check that silently does not run is a check that passes whatever the files say. Elsewhere the
test is skipped and says which package to install.
"""

from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {"shellcheck": "shellcheck", "desktop-file-validate": "desktop-file-utils"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(tool: str) -> str:
    """The path of ``tool``; fails the calling test in CI when it is missing, skips it elsewhere."""
    path = shutil.which(tool)
    if path:
        return path
    message = f"{tool} is not installed (apt-get install {PACKAGES.get(tool, tool)}; .ci/run installs it)"
    if in_ci():
        pytest.fail(f"{message}: CI must run this check", pytrace=False)
    pytest.skip(message)

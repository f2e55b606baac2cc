"""Where Easel keeps its files: one data folder (settings, logs, outputs, library, caches).

``easel --data-dir DIR`` (and the app's same option) puts everything under DIR; otherwise the
platform's per-user data folder (platformdirs). Bundled read-only resources live in ``resources/``
beside the packages, or inside the PyInstaller bundle.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "Easel"
_ENV_DATA_DIR = "EASEL_DATA_DIR"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``override``, else $EASEL_DATA_DIR, else the platform's user data folder."""
    if override:
        path = Path(override).expanduser()
    elif os.environ.get(_ENV_DATA_DIR):
        path = Path(os.environ[_ENV_DATA_DIR]).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def outputs_dir(root: Path) -> Path:
    path = root / "outputs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def library_dir(root: Path) -> Path:
    """The gallery library: the outputs folder, with its index in ``.easel/`` (see engine.library)."""
    return outputs_dir(root)


def logs_dir(root: Path) -> Path:
    path = root / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def settings_file(root: Path) -> Path:
    return root / "settings.json"


def resources_dir() -> Path:
    """Bundled read-only resources (model configs, tokenizer files, icons, styles)."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"

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


def data_dir(override: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """The data folder: ``override``, else $EASEL_DATA_DIR, else the platform's user data folder.

    Made when missing (unless ``create`` is false). A path that exists but is not a folder, or a
    folder that cannot be made, raises ``EaselError`` with one line. Any thread.
    """
    if override is not None and str(override) == "":
        from engine.api import EaselError

        raise EaselError("--data-dir: give a folder (the value is empty)")
    if override:
        path = Path(override).expanduser()
    elif os.environ.get(_ENV_DATA_DIR):
        path = Path(os.environ[_ENV_DATA_DIR]).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    if create:
        _make_folder(path, "the data folder")
    return path


def _make_folder(path: Path, what: str) -> None:
    from engine.api import EaselError
    from engine.files.safe import printable

    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise EaselError(f"{what} {printable(str(path))} is a file, not a folder: give another --data-dir") from None
    except OSError as exc:
        raise EaselError(f"{what} {printable(str(path))} cannot be made: {exc.strerror or exc}") from None


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

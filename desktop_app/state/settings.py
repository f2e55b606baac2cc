"""Settings that survive a restart, kept in <data>/settings.json and written atomically."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.outputs import write_text_atomic

log = logging.getLogger(__name__)

SCHEMA = 1
THEMES = ("system", "dark", "light")


def _defaults() -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "theme": "system",
        "model_folders": [],
        "parameters": {},
        "embed_metadata": True,  # prompt, seed and model in saved PNGs
        "window": {"geometry": "", "state": "", "splitters": {}},
    }


class SettingsStore(QObject):
    """Holds the settings dict. A corrupt file is moved aside and replaced by defaults (``notice``)."""

    theme_changed = Signal(str)
    model_folders_changed = Signal(list)

    def __init__(self, path: Path, parent: QObject | None = None):
        super().__init__(parent)
        self.path = Path(path)
        self.notice: str | None = None  # set when the file could not be read; the window shows it
        self._data = self._read()

    # -- file ---------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        data = _defaults()
        if not self.path.exists():
            return data
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise ValueError("the top level is not an object")
            _check(loaded)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            backup = self.path.with_name(f"settings.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
            try:
                os.replace(self.path, backup)
                where = f"it was moved to {backup.name}"
            except OSError:
                where = "it could not be moved aside"
            log.warning("settings file %s unreadable (%s); %s; using defaults", self.path, exc, where)
            self.notice = f"Your settings file could not be read ({exc}); {where}. Easel started with default settings."
            return data
        data.update({k: v for k, v in loaded.items() if k in data})
        return data

    def save(self) -> None:
        """Write atomically: a temporary file in the same folder, then rename over the old one."""
        write_text_atomic(self.path, json.dumps(self._data, indent=2, sort_keys=True))

    # -- values -------------------------------------------------------------------------------

    @property
    def theme(self) -> str:
        return self._data["theme"] if self._data["theme"] in THEMES else "system"

    @theme.setter
    def theme(self, value: str) -> None:
        if value not in THEMES:
            raise ValueError(f"theme must be one of {THEMES}")
        if value != self._data["theme"]:
            self._data["theme"] = value
            self.theme_changed.emit(value)

    @property
    def model_folders(self) -> list[str]:
        return list(self._data["model_folders"])

    def add_model_folder(self, folder: str) -> bool:
        folder = str(Path(folder).expanduser())
        if folder in self._data["model_folders"]:
            return False
        self._data["model_folders"].append(folder)
        self.model_folders_changed.emit(self.model_folders)
        return True

    def remove_model_folder(self, folder: str) -> None:
        if folder in self._data["model_folders"]:
            self._data["model_folders"].remove(folder)
            self.model_folders_changed.emit(self.model_folders)

    @property
    def embed_metadata(self) -> bool:
        """Whether saved images carry their generation settings (prompt, seed, model)."""
        return bool(self._data.get("embed_metadata", True))

    @embed_metadata.setter
    def embed_metadata(self, value: bool) -> None:
        self._data["embed_metadata"] = bool(value)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self._data["parameters"])

    @parameters.setter
    def parameters(self, value: dict[str, Any]) -> None:
        self._data["parameters"] = dict(value)

    @property
    def window(self) -> dict[str, Any]:
        return self._data["window"]

    def set_window(self, geometry: str, state: str, splitters: dict[str, list[int]]) -> None:
        self._data["window"] = {"geometry": geometry, "state": state, "splitters": splitters}


def _check(data: dict[str, Any]) -> None:
    """Reject a file whose known fields have the wrong shape (treated like corruption)."""
    expected = {"theme": str, "model_folders": list, "parameters": dict, "window": dict, "embed_metadata": bool}
    for key, kind in expected.items():
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"{key} has the wrong type")
    if not all(isinstance(f, str) for f in data.get("model_folders", [])):
        raise ValueError("model_folders must be a list of paths")

"""The app's name, version, icon and ids, read from pyproject.toml for the spec and the installers.

pyproject.toml is where they are declared. The version itself lives in ``engine/__init__.py``
(``__version__``); pyproject names it as ``[tool.setuptools.dynamic] version = {attr = ...}``, and
this module follows that pointer, so the wheel, the bundle, ``easel --version`` and every installer
carry the same number.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AppMeta:
    name: str  # the distribution name, e.g. "easel"
    display_name: str  # what people see: "Easel"
    executable: str  # the launcher's file name without extension
    version: str
    description: str
    icon: Path  # the SVG source of every icon
    bundle_id: str  # macOS CFBundleIdentifier
    windows_app_id: str  # Inno Setup AppId (a GUID in braces)
    publisher: str


def _attr_value(attr: str, root: Path) -> str:
    """Resolve ``package.module.NAME`` the way setuptools does for a literal: read the file, no import."""
    module, _, name = attr.rpartition(".")
    base = root.joinpath(*module.split("."))
    source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{attr} is not assigned a literal in {source}")


def load(root: Path = ROOT) -> AppMeta:
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    if "version" in project:
        version = project["version"]
    else:
        version = _attr_value(data["tool"]["setuptools"]["dynamic"]["version"]["attr"], root)
    app = data["tool"]["easel"]["app"]
    return AppMeta(
        name=project["name"],
        display_name=app["display-name"],
        executable=app["executable"],
        version=version,
        description=project["description"],
        icon=root / app["icon"],
        bundle_id=app["bundle-id"],
        windows_app_id=app["windows-app-id"],
        publisher=app["publisher"],
    )


if __name__ == "__main__":
    for key, value in load().__dict__.items():
        print(f"{key}={value}")

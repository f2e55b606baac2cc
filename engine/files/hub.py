"""Names of folders in the Hugging Face cache layout (``<hub>/models--org--name/snapshots/<rev>``).
Stdlib only; any thread; touches no disk beyond resolving the path."""

from __future__ import annotations

from pathlib import Path


def repo_name(root: str | Path) -> str:
    """The name a model folder goes by: for a Hugging Face cache snapshot the repository's
    (``org/name``), else the folder's own."""
    root = Path(root)
    parts = root.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--"):].replace("--", "/")
    return root.name or root.resolve().name

"""DeepFloyd IF folders: what each stage is, what it lacks, and where a cascade's stages are (the x4
upscaler folder examines itself: ``engine.families.sd_x4``).

A DeepFloyd IF cascade is three diffusers folders that the user keeps side by side::

    models/
      IF-I-XL-v1.0/                  model_index "IFPipeline": the model to pick (T5 + 64 px base)
      IF-II-L-v1.0/                  "IFSuperResolutionPipeline": stage II, 64 -> 256 px (required)
      stable-diffusion-x4-upscaler/  "StableDiffusionUpscalePipeline": stage III, 256 -> 1024 px (optional)

Folders in the Hugging Face cache (``models--DeepFloyd--IF-I-XL-v1.0/snapshots/<rev>``) find their
stages among the cache's other repositories the same way. Released IF folders list a safety checker,
feature extractor and watermarker, and stage II lists no text encoder (it reuses stage I's T5
embeddings): none of those is required on disk. Stdlib only (like ``engine.files.folders``, which calls
this); reads JSON configs and safetensors headers, never tensor data. Any thread.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsupportedModel
from engine.families.sd_x4 import probe as x4_probe
from engine.files.folders import parts_problem
from engine.files.safe import open_regular, read_text

STAGE1, STAGE2, X4 = "IFPipeline", "IFSuperResolutionPipeline", "StableDiffusionUpscalePipeline"
IF_FAMILY = "deepfloyd-if"

# The parts each pipeline cannot run without.
PARTS = {
    STAGE1: ("unet", "text_encoder", "tokenizer", "scheduler"),
    STAGE2: ("unet", "scheduler", "image_noising_scheduler"),
    X4: x4_probe.PARTS,
}
_WHAT = {STAGE1: "DeepFloyd IF", STAGE2: "DeepFloyd IF stage II", X4: "x4 upscaler"}
_MAX_SIBLINGS = 400  # folders looked at for a cascade's other stages (a models folder, or the hub cache)


@dataclass(frozen=True)
class Cascade:
    """The folders of one IF cascade. ``upscaler_problem`` says why an x4 folder found next to it
    cannot be used (then ``upscaler`` is None and the cascade ends at stage II)."""

    stage1: Path
    stage2: Path
    upscaler: Path | None = None
    upscaler_problem: str | None = None


def examine(root: Path, cls: str, index: dict, result) -> tuple[ModelInfo, type[ModelError] | None]:
    """The folder probe for IF stage I and II folders (``result``: engine.files.folders' builder)."""
    problem, error = folder_problem(root, cls)
    if problem is not None:
        return result(problem, error, family=IF_FAMILY)
    if cls == STAGE2:
        first = _nearest(root, STAGE1)
        where = f" ({first.name})" if first is not None else " (IF-I-…); keep the stages side by side in one folder"
        info, _ = result(f"this is DeepFloyd IF stage II: pick the stage I folder next to it{where}",
                         UnsupportedModel, "unknown", IF_FAMILY)
        return dataclasses.replace(info, variant="stage2"), UnsupportedModel
    try:
        find_cascade(root)
    except ModelError as exc:
        info, error = result(exc.problem, type(exc), "checkpoint", IF_FAMILY)
    else:
        info, error = result(None, None, "checkpoint", IF_FAMILY)
    return dataclasses.replace(info, variant="cascade"), error


def folder_problem(root: Path, cls: str) -> tuple[str | None, type[ModelError] | None]:
    """(None, None) when ``root`` has every part ``cls`` needs with readable safetensors weights; else
    one line saying what is missing or wrong, and the error type to raise."""
    return parts_problem(root, PARTS[cls], _WHAT[cls])


def find_cascade(stage1: str | os.PathLike[str]) -> Cascade:
    """The stage II (required) and x4 upscaler (optional) folders that belong with ``stage1``.

    Looks at the folders beside it, or at the other repositories of the Hugging Face cache it lives
    in. With several candidates, the first complete one by name wins (IF-II-L before IF-II-M).
    Raises ModelError with one line when no usable stage II is there.
    """
    root = Path(stage1)
    candidates = _candidates(root)
    seconds = [p for p, cls in candidates if cls == STAGE2]
    stage2 = problem2 = None
    for folder in seconds:
        problem2, _ = folder_problem(folder, STAGE2)
        if problem2 is None:
            stage2 = folder
            break
    if stage2 is None:
        if seconds:
            raise ModelError(str(root), f"its DeepFloyd IF stage II folder next to it ({seconds[0].name}) "
                             f"cannot be used: {problem2}")
        raise ModelError(str(root), "DeepFloyd IF needs its stage II folder (IF-II-…, 64 to 256 px) next to this "
                         f"one, in {root.parent.name or root.parent}: none was found")
    upscaler = upscaler_problem = None
    for folder in (p for p, cls in candidates if cls == X4):
        problem, _ = folder_problem(folder, X4)
        if problem is None:
            upscaler, upscaler_problem = folder, None
            break
        upscaler_problem = upscaler_problem or f"{folder.name}: {problem}"
    return Cascade(root, stage2, upscaler, upscaler_problem)


def _candidates(root: Path) -> list[tuple[Path, str]]:
    """(folder, pipeline class) of the IF/x4 folders beside ``root``, sorted by name."""
    hub = _hub_snapshot_root(root)
    if hub is not None:
        folders = [snap for repo in _listdir(hub) if repo.name.startswith("models--") for snap in _snapshots(repo)]
    else:
        folders = _listdir(root.parent)
    found = []
    for folder in folders[:_MAX_SIBLINGS]:
        if folder == root:
            continue
        cls = _class_name(folder)
        if cls in (STAGE2, X4):
            found.append((folder, cls))
    return sorted(found, key=lambda item: _sort_name(item[0]))


def _nearest(root: Path, cls: str) -> Path | None:
    hub = _hub_snapshot_root(root)
    folders = ([s for repo in _listdir(hub) for s in _snapshots(repo)] if hub is not None
               else _listdir(root.parent))
    hits = [f for f in folders[:_MAX_SIBLINGS] if f != root and _class_name(f) == cls]
    return min(hits, key=_sort_name) if hits else None


def _hub_snapshot_root(root: Path) -> Path | None:
    """The hub cache folder when ``root`` is ``<hub>/models--org--name/snapshots/<rev>``."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return root.parent.parent.parent
    return None


def _snapshots(repo: Path) -> list[Path]:
    """A hub repository's snapshot to use: the one refs/main names, else the newest."""
    snaps = _listdir(repo / "snapshots")
    try:
        main = read_text(repo / "refs" / "main", 4096).strip()
    except OSError:
        main = ""
    chosen = [s for s in snaps if s.name == main]
    if chosen:
        return chosen
    return sorted(snaps, key=_mtime)[-1:]


def _sort_name(folder: Path) -> str:
    hub = folder.parent.parent.name if folder.parent.name == "snapshots" else ""
    return (hub or folder.name).lower()


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _class_name(folder: Path) -> str | None:
    try:
        with open_regular(folder / "model_index.json") as f:  # never a FIFO: it would block the scan
            data = json.loads(f.read(1_000_000).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    cls = data.get("_class_name") if isinstance(data, dict) else None
    return cls if isinstance(cls, str) else None

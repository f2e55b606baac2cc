"""Diffusers folders: what a folder with a ``model_index.json`` is, or what it lacks.

A folder is judged by its JSON configs and the headers of its ``*.safetensors`` weights (each one
validated by ``engine.files.headers``); a part holding only pickled weights is refused. The family
whose pipelines include the folder's ``_class_name`` examines it (its folder probe, registered with
``engine.families``), with the helpers here. Stdlib and ``engine.api`` only. Any thread; the
folder's size is summed only once it proves to be a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsafeModelFile, UnsupportedModel
from engine.files.control import examine_control_folder, is_control_folder
from engine.files.headers import PICKLE_PROBLEM, quote, read_header
from engine.files.safe import UnreadableFile, read_bytes

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def examine_folder(spath: str) -> tuple[ModelInfo, type[ModelError] | None]:
    """What the diffusers folder ``spath`` is: the family whose pipelines include its model_index
    ``_class_name`` examines it (``engine.families``: each family contributes its folder probe)."""
    root = Path(spath)
    name = root.name or root.resolve().name
    size = 0  # summed only once the folder proves to be a model: never walk an arbitrary tree

    def result(problem: str | None, error: type[ModelError] | None = None, kind: str = "unknown",
               family: str = "", prediction: str = "epsilon") -> tuple[ModelInfo, type[ModelError] | None]:
        return ModelInfo(spath, name, kind, family, "diffusers", prediction, size, problem), error

    if not (root / "model_index.json").is_file() and is_control_folder(root):
        return examine_control_folder(spath)  # a diffusers ControlNet: one model, no pipeline
    if not (root / "model_index.json").is_file():
        return result("this folder is not a diffusers model (it has no model_index.json)", ModelError)
    size = folder_size(root)
    try:
        index = read_json(root, "model_index.json")
        cls = index.get("_class_name")
        if not isinstance(cls, str):
            return result("model_index.json has no _class_name: not a diffusers pipeline folder", ModelError)
        probe = folder_probe(cls)
        if probe is None:
            return result(f"{quote(cls)[1:-1]} models are not supported yet", UnsupportedModel)
        return probe(root, cls, index, result)
    except ModelError as e:
        return result(relative_problem(root, e), type(e))


def folder_probe(cls: str):
    """The probe ``(root, cls, index, result) -> (ModelInfo, error)`` a family registered for the
    pipeline class ``cls``, or None. The families are looked up when first asked (they import this
    module, so it cannot import them)."""
    import importlib

    return importlib.import_module("engine.families").folder_probes().get(cls)


def relative_problem(root: Path, e: ModelError) -> str:
    """``e``'s problem, naming a file inside ``root`` relative to it."""
    if Path(e.path) == root:
        return e.problem
    try:
        return f"{Path(e.path).relative_to(root).as_posix()}: {e.problem}"
    except ValueError:
        return f"{e.path}: {e.problem}"


def parts_problem(root: Path, parts, what: str) -> tuple[str | None, type[ModelError] | None]:
    """(None, None) when ``root`` has every part in ``parts`` with readable safetensors weights; else
    one line saying what is missing or wrong (``what``: "aMUSEd", "x4 upscaler"…) and the error type."""
    try:
        missing = [m for part in parts for m in missing_parts(root, part)]
        if missing:
            return f"incomplete {what} folder: missing " + ", ".join(missing), ModelError
        for part in parts:
            for weights in weight_files(root / part):
                read_header(weights)
    except ModelError as exc:
        return relative_problem(root, exc), type(exc)
    return None, None


def listed(index: dict, component: str) -> bool:
    entry = index.get(component)
    return isinstance(entry, list) and any(x is not None for x in entry)


def missing_parts(root: Path, part: str) -> list[str]:
    folder = root / part
    if part.endswith("scheduler"):
        return [] if (folder / "scheduler_config.json").is_file() else [f"{part}/scheduler_config.json"]
    if part == "feature_extractor":
        return [] if (folder / "preprocessor_config.json").is_file() else [f"{part}/preprocessor_config.json"]
    if part == "processor":  # a multimodal processor (Qwen2.5-VL's): older saves keep preprocessor_config.json
        ok = (folder / "preprocessor_config.json").is_file() or (folder / "processor_config.json").is_file()
        return [] if ok else [f"{part}/preprocessor_config.json"]
    if not folder.is_dir():
        return [f"{part}/"]
    if part.startswith("tokenizer"):
        ok = ((folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file()
              or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()))
        return [] if ok else [f"{part}/ vocab files (tokenizer.json, spiece.model, or vocab.json + merges.txt)"]
    out = [] if (folder / "config.json").is_file() else [f"{part}/config.json"]
    if not weight_files(folder):
        pickles = sorted(f.name for f in folder.iterdir() if f.name.endswith(_PICKLE_SUFFIXES) and f.is_file())
        if pickles:
            raise UnsafeModelFile(str(folder / pickles[0]), PICKLE_PROBLEM)
        out.append(f"{part}/ weights")
    return out


def weight_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(f for f in folder.iterdir() if f.name.endswith(".safetensors") and f.is_file())


def read_json(root: Path, rel: str) -> dict:
    path = root / rel
    try:
        raw = read_bytes(path, 10_000_000)  # a regular file only: a FIFO would block, /dev/zero never end
    except UnreadableFile as e:
        if "no such file" in e.problem:
            raise ModelError(str(root), f"incomplete diffusers folder: missing {rel}") from None
        raise ModelError(str(root), f"{rel}: {e.problem}") from None
    except FileNotFoundError:
        raise ModelError(str(root), f"incomplete diffusers folder: missing {rel}") from None
    except OSError as e:
        raise ModelError(str(root), f"{rel} cannot be read: {e.strerror or e}") from None
    if len(raw) > 10_000_000:
        raise ModelError(str(root), f"{rel} is implausibly large (over 10 MB): the folder is damaged")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelError(str(root), f"{rel} is not UTF-8 text: the folder is damaged") from None
    except (ValueError, RecursionError) as e:
        where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise ModelError(str(root), f"{rel} is not valid JSON{where}: the folder is damaged") from None
    if not isinstance(obj, dict):
        raise ModelError(str(root), f"{rel} is not a JSON object: the folder is damaged")
    return obj


def folder_size(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.stat(os.path.join(folder, f)).st_size  # follows links, as HF cache folders use
            except OSError:
                pass
    return total


def weights_variant(folder: str | os.PathLike[str], parts: tuple[str, ...] | None = None) -> str | None:
    """"fp16" when some part has only ``*.fp16*.safetensors`` weights (a download made with
    ``variant="fp16"``, as DeepFloyd's instructions say), so diffusers must be told; else None."""
    root = Path(folder)
    for part in parts or ("unet", "text_encoder", "vae"):
        names = [f.name for f in (root / part).glob("*.safetensors")] if (root / part).is_dir() else []
        if names and all(".fp16" in n for n in names):
            return "fp16"
    return None

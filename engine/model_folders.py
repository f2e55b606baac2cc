"""Diffusers folders: what a folder with a ``model_index.json`` is, or what it lacks.

A folder is judged by its JSON configs and the headers of its ``*.safetensors`` weights (each one
validated by ``engine.model_headers``); a part holding only pickled weights is refused. SD 1.x / 2.x /
SDXL, aMUSEd and Stable unCLIP folders are examined here; DeepFloyd IF stages and the SD x4 upscaler
in ``engine.families.cascade_files`` (imported lazily; it uses ``_missing`` and ``_weight_files``).
Stdlib and ``engine.api`` only. Any thread; the folder's size is summed only once it proves to be a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsafeModelFile, UnsupportedModel
from engine.files.safe import UnreadableFile, read_bytes
from engine.model_headers import PICKLE_PROBLEM, _q, read_header
from engine.model_kinds import _looks_turbo

_PIPELINES = {
    "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline",
}
_AMUSED_PIPELINES = {"AmusedPipeline", "AmusedImg2ImgPipeline", "AmusedInpaintPipeline"}
_CASCADE_PIPELINES = {"IFPipeline", "IFSuperResolutionPipeline", "StableDiffusionUpscalePipeline"}
UNCLIP_PRIOR_PROBLEM = (
    "Stable unCLIP text-to-image (StableUnCLIPPipeline) needs the Karlo prior model, which Easel does not run: "
    "use the image-variations model (stable-diffusion-2-1-unclip) with Variations"
)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _examine_folder(spath: str) -> tuple[ModelInfo, type[ModelError] | None]:
    root = Path(spath)
    name = root.name or root.resolve().name
    size = 0  # summed only once the folder proves to be a model: never walk an arbitrary tree

    def result(problem: str | None, error: type[ModelError] | None = None, kind: str = "unknown",
               family: str = "", prediction: str = "epsilon") -> tuple[ModelInfo, type[ModelError] | None]:
        return ModelInfo(spath, name, kind, family, "diffusers", prediction, size, problem), error

    if not (root / "model_index.json").is_file():
        return result("this folder is not a diffusers model (it has no model_index.json)", ModelError)
    size = _folder_size(root)
    try:
        index = _read_json(root, "model_index.json")
        cls = index.get("_class_name")
        if not isinstance(cls, str):
            return result("model_index.json has no _class_name: not a diffusers pipeline folder", ModelError)
        if cls in _AMUSED_PIPELINES:
            return _examine_amused(root, result)
        if cls in _CASCADE_PIPELINES:  # DeepFloyd IF stages and the SD x4 upscaler
            from engine.families import cascade_files

            return cascade_files.examine(root, cls, result)
        if cls == "StableUnCLIPImg2ImgPipeline":
            return _examine_unclip(root, result)
        if cls == "StableUnCLIPPipeline":
            return result(UNCLIP_PRIOR_PROBLEM, UnsupportedModel, family="unclip")
        xl = _listed(index, "text_encoder_2") or cls.startswith("StableDiffusionXL")
        if cls not in _PIPELINES:
            return result(f"{_q(cls)[1:-1]} models are not supported yet", UnsupportedModel)
        if xl and not _listed(index, "text_encoder"):
            return result("SDXL refiner models are not supported yet", UnsupportedModel, family="sdxl")

        parts = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] + (["text_encoder_2", "tokenizer_2"] if xl else [])
        missing = [m for part in parts for m in _missing(root, part)]
        if missing:
            return result("incomplete diffusers folder: missing " + ", ".join(missing), ModelError)
        for part in parts:
            for weights in _weight_files(root / part):
                read_header(weights)

        unet = _read_json(root, "unet/config.json")
        if xl:
            family = "sdxl"
        else:
            act = _read_json(root, "text_encoder/config.json").get("hidden_act")
            family = "sd2" if act == "gelu" else "sd1"
        scheduler = _read_json(root, "scheduler/scheduler_config.json")
    except ModelError as e:
        problem = e.problem
        if Path(e.path) != root:  # a weights file inside the folder: name it relative to the folder
            try:
                problem = f"{Path(e.path).relative_to(root).as_posix()}: {problem}"
            except ValueError:
                problem = f"{e.path}: {problem}"
        return result(problem, type(e))

    prediction = "v_prediction" if scheduler.get("prediction_type") == "v_prediction" else "epsilon"
    channels = unet.get("in_channels", 4)
    turbo = _looks_turbo(f"{name} {index.get('_name_or_path', '')}", {})
    if channels == 4:
        info, error = result(None, None, "checkpoint", family, prediction)
        return (dataclasses.replace(info, variant="turbo") if turbo else info), error
    if channels == 9:
        return result(None, None, "inpaint", family, prediction)
    return result(f"the UNet takes {_q(str(channels))[1:-1]} input channels (4 = normal, 9 = inpainting): "
                  "this kind of model is not supported yet", UnsupportedModel, "unknown", family, prediction)


def _examine_amused(root: Path, result) -> tuple[ModelInfo, type[ModelError] | None]:
    """aMUSEd (VQ-GAN tokens + masked transformer): one folder runs text-to-image, img2img and inpaint."""
    parts = ["transformer", "vqvae", "text_encoder", "tokenizer", "scheduler"]
    try:
        missing = [m for part in parts for m in _missing(root, part)]
        if missing:
            return result("incomplete aMUSEd folder: missing " + ", ".join(missing), ModelError, family="amused")
        for part in parts:
            for weights in _weight_files(root / part):
                read_header(weights)
    except ModelError as e:
        return result(f"{Path(e.path).name}: {e.problem}", type(e), family="amused")
    info, error = result(None, None, "checkpoint", "amused")
    return dataclasses.replace(info, variant="amused"), error


def _examine_unclip(root: Path, result) -> tuple[ModelInfo, type[ModelError] | None]:
    """Stable unCLIP image variations (stabilityai/stable-diffusion-2-1-unclip layout): a CLIP image
    embedding, noised by ``noise_level``, conditions an SD 2.x UNet."""
    parts = ["unet", "vae", "text_encoder", "tokenizer", "scheduler", "image_encoder", "image_normalizer",
             "image_noising_scheduler", "feature_extractor"]
    try:
        missing = [m for part in parts for m in _missing_unclip(root, part)]
        if missing:
            return result("incomplete Stable unCLIP folder: missing " + ", ".join(missing), ModelError,
                          family="unclip")
        for part in parts:
            for weights in _weight_files(root / part):
                read_header(weights)
        scheduler = _read_json(root, "scheduler/scheduler_config.json")
    except ModelError as e:
        return result(f"{Path(e.path).name}: {e.problem}", type(e), family="unclip")
    prediction = "v_prediction" if scheduler.get("prediction_type") == "v_prediction" else "epsilon"
    info, error = result(None, None, "checkpoint", "unclip", prediction)
    return dataclasses.replace(info, variant="unclip"), error


def _missing_unclip(root: Path, part: str) -> list[str]:
    if part == "image_noising_scheduler":
        ok = (root / part / "scheduler_config.json").is_file()
        return [] if ok else [f"{part}/scheduler_config.json"]
    if part == "feature_extractor":
        return [] if (root / part / "preprocessor_config.json").is_file() else [f"{part}/preprocessor_config.json"]
    return _missing(root, part)


def _listed(index: dict, component: str) -> bool:
    entry = index.get(component)
    return isinstance(entry, list) and any(x is not None for x in entry)


def _missing(root: Path, part: str) -> list[str]:
    folder = root / part
    if not folder.is_dir():
        return [f"{part}/"]
    if part.startswith("tokenizer"):
        ok = (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())
        return [] if ok else [f"{part}/ vocab files"]
    if part == "scheduler":
        return [] if (folder / "scheduler_config.json").is_file() else ["scheduler/scheduler_config.json"]
    out = [] if (folder / "config.json").is_file() else [f"{part}/config.json"]
    if not _weight_files(folder):
        pickles = sorted(f.name for f in folder.iterdir() if f.name.endswith(_PICKLE_SUFFIXES) and f.is_file())
        if pickles:
            raise UnsafeModelFile(str(folder / pickles[0]), PICKLE_PROBLEM)
        out.append(f"{part}/ weights")
    return out


def _weight_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(f for f in folder.iterdir() if f.name.endswith(".safetensors") and f.is_file())


def _read_json(root: Path, rel: str) -> dict:
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


def _folder_size(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.stat(os.path.join(folder, f)).st_size  # follows links, as HF cache folders use
            except OSError:
                pass
    return total

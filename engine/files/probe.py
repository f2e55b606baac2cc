"""What a model file or folder is, decided from its first bytes and header alone.

Nothing here reads tensor data or unpickles anything: a safetensors file is judged by its JSON
header (8 + N bytes), a pickle or torch zip by its magic bytes, a diffusers folder by its JSON
configs and the headers of its weight files. Detection rests on tensor *names* and channel counts,
which hold at any size, so a 3 MB random-weight test checkpoint is recognised exactly like a 7 GB
release. Only the stdlib and ``engine.api`` are imported, so this module is cheap to import from
the GUI side (model library lists, drag-and-drop checks).

Every function may be called from any thread; they only read files. ``check_model`` and
``inspect_model`` read a few KB to a few MB; ``sha256_file`` / ``model_hash`` read the whole file
(seconds for a 7 GB model), so call those off the GUI thread.

The work is split by idea: ``engine.files.headers`` (sniffing, safetensors header validation,
pickle refusal), ``engine.files.kinds`` (kind and family from tensor names) and
``engine.files.folders`` (diffusers folders, each examined by the family that registered its pipeline
class: ``engine.families.folder_probes``). This module is the entry point every caller imports:
``check_model``, ``inspect_model`` and the hashes live here, and the names others use from the
parts are re-exported.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsupportedModel
from engine.files import split
from engine.files.folders import examine_folder, weight_files
from engine.files.safe import open_regular
from engine.files.headers import (  # noqa: F401 - re-exported: the public names of engine.files.probe
    EMPTY_PROBLEM,
    GGUF_PROBLEM,
    LFS_PROBLEM,
    MAX_HEADER_BYTES,
    PICKLE_PROBLEM,
    SafetensorsHeader,
    TensorInfo,
    quote,
    read_gguf_header,
    read_header,
    sniff,
)
from engine.files.kinds import UNKNOWN_PROBLEM, UPSCALER_PROBLEM, classify, looks_turbo, prediction_type  # noqa: F401

# --------------------------------------------------------------------------------------------
# Files and folders
# --------------------------------------------------------------------------------------------


def check_model(path: str | os.PathLike[str]) -> ModelInfo:
    """What a model file or diffusers folder is, or why Easel cannot run it.

    Returns a usable ModelInfo (kind "checkpoint" or "inpaint", family sd1/sd2/sdxl). Raises
    ModelError (missing, malformed), UnsafeModelFile (pickle) or UnsupportedModel (a LoRA, VAE,
    embedding, upscaler, SD3, Flux, refiner, ControlNet, anything unrecognised): ``str(error)`` is
    one line naming the path.
    """
    info, error = _examine(path)
    if error is not None:
        raise error(info.path, info.problem or UNKNOWN_PROBLEM)
    return info


def inspect_model(path: str | os.PathLike[str]) -> ModelInfo:
    """Like check_model but never raises: every problem becomes ``ModelInfo.problem`` (one line).

    ``kind``/``family`` say what the file is as far as can be told (a LoRA is kind "lora" with its
    family), so a library list can show every file. For files that are not safetensors, ``format``
    is what ``sniff`` found ("pickle", "torch-zip", "lfs-pointer", "empty", "gguf", "unknown").
    """
    try:
        return _examine(path)[0]
    except Exception as e:  # noqa: BLE001 - a library listing must survive any file
        spath = os.fspath(path)
        return ModelInfo(spath, Path(spath).stem, "unknown", "", "unknown",
                         problem=f"could not be inspected: {quote(str(e))[1:-1]}")


def _examine(path: str | os.PathLike[str]) -> tuple[ModelInfo, type[ModelError] | None]:
    spath = os.fspath(path)
    p = Path(spath)
    try:
        st = os.stat(spath)
    except FileNotFoundError:
        return ModelInfo(spath, p.stem, "unknown", "", "", problem="not found"), ModelError
    except OSError as e:
        return ModelInfo(spath, p.stem, "unknown", "", "", problem=f"cannot be read: {e.strerror or e}"), ModelError
    if stat.S_ISDIR(st.st_mode):
        if not (p / "model_index.json").is_file():
            denoisers = split.denoisers_in(p)
            if denoisers:  # ComfyUI's install or model folder: its one transformer is the model
                if len(denoisers) == 1:
                    return _examine_file(str(denoisers[0]), denoisers[0].stat().st_size)
                problem = (f"this is ComfyUI's model folder with {len(denoisers)} transformers in it: pick one of them, "
                           f"such as {', '.join(str(d) for d in denoisers[:3])}")
                return ModelInfo(spath, p.name, "unknown", "", "diffusers", problem=problem), ModelError
        return examine_folder(spath)
    return _examine_file(spath, st.st_size)


def _examine_file(spath: str, size: int) -> tuple[ModelInfo, type[ModelError] | None]:
    name = Path(spath).stem
    fmt = "safetensors"
    try:
        if sniff(spath) == "gguf":  # a quantized transformer (city96's FLUX GGUF files): by its bytes
            fmt, header = "gguf", read_gguf_header(spath)
        else:
            header = read_header(spath)
    except ModelError as e:
        return ModelInfo(spath, name, "unknown", "", sniff(spath), size_bytes=size, problem=e.problem), type(e)
    verdict = classify(header, name)
    if fmt == "gguf" and verdict.family not in split.NEEDS:
        label = split.FAMILY_LABELS.get(verdict.family)
        problem = (GGUF_PROBLEM if label is None else f"{label} GGUF transformers do not load yet (FLUX.1, FLUX.2, "
                   "Z-Image, Qwen-Image and SD 3.5 ones do): use the model's diffusers folder or its .safetensors files")
        return ModelInfo(spath, name, "unknown", verdict.family if label else "", fmt, size_bytes=size,
                         problem=problem), UnsupportedModel
    runnable = verdict.kind in ("checkpoint", "inpaint")
    prediction = prediction_type(header, verdict.family if runnable else "", verdict.kind)
    variant = "turbo" if runnable and looks_turbo(name, header.metadata) else verdict.variant
    if variant and "modelspec.prediction_type" not in header.metadata:
        prediction = "epsilon"  # SD-Turbo is an epsilon model although SD 2.x files default to v here
    problem, error = verdict.problem, verdict.error
    part = split.identify(header) if runnable and verdict.family in split.NEEDS else None
    if part is not None:  # a transformer of ComfyUI's split layout: its other parts must be there too
        variant, prediction = part.variant or variant, "flow"
        problem = split.UNSUPPORTED_VARIANTS.get((part.arch, part.variant))
        error = UnsupportedModel if problem else None
        try:
            if problem is None:
                split.find_parts(part)
        except split.MissingPart as exc:
            problem, error = exc.problem, type(exc)
    info = ModelInfo(spath, name, verdict.kind, verdict.family, fmt, prediction, size, problem, variant)
    return info, error


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The file's full SHA-256 as hex, read in ``chunk``-byte pieces (whole file: run off the GUI thread)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open_regular(path) as f:  # a FIFO or device would block or never end
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def hash_target(path: str | os.PathLike[str]) -> Path:
    """The file whose hash stands for ``path``: the file itself, or a diffusers folder's unet (or
    transformer) weights: ``diffusion_pytorch_model.safetensors`` when present, else the first
    ``*.safetensors`` by name; a one-model folder (a ControlNet: config.json, no model_index.json), its
    own weights. Raises ModelError for a folder with nothing to hash."""
    target = Path(path)
    if not target.is_dir():
        return target
    if not (target / "model_index.json").is_file() and (target / "config.json").is_file():
        own = weight_files(target)  # a single-model folder (a diffusers ControlNet): its own weights
        if own:
            return own[0]
    unet = target / "unet"
    if not unet.is_dir() and (target / "transformer").is_dir():  # aMUSEd and other transformer models
        unet = target / "transformer"
    preferred = unet / "diffusion_pytorch_model.safetensors"
    files = [preferred] if preferred.is_file() else weight_files(unet)
    if not files:
        raise ModelError(os.fspath(path), "no unet weights to hash (unet/*.safetensors)")
    return files[0]


def model_hash(path: str | os.PathLike[str]) -> str:
    """A1111's "Model hash": the first 10 hex digits of the SHA-256 of the weights file.

    For a diffusers folder, of its unet weights (``diffusion_pytorch_model.safetensors`` when
    present, else the first ``*.safetensors`` in ``unet/`` by name). Raises ModelError when there is
    nothing to hash. Reads the whole file: run off the GUI thread.
    """
    spath = os.fspath(path)
    target = hash_target(spath)
    try:
        return sha256_file(target)[:10]
    except FileNotFoundError:
        raise ModelError(spath, "not found") from None
    except OSError as e:
        raise ModelError(spath, f"cannot be read: {e.strerror or e}") from None

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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsafeModelFile, UnsupportedModel

MAX_HEADER_BYTES = 100_000_000  # the safetensors reference implementation's limit

# Bits per element; sub-byte float formats pack several elements per byte.
_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}

PICKLE_PROBLEM = (
    "pickle-based checkpoint: Easel never opens these because loading them can run code; "
    "use a .safetensors version of this model"
)
EMPTY_PROBLEM = "empty file (0 bytes): the download or copy did not finish"
LFS_PROBLEM = "this is a git-LFS pointer, not the model itself: fetch the real file (git lfs pull)"
UPSCALER_PROBLEM = "this is an upscaler (ESRGAN-style), not a checkpoint: use it with Upscale"
UNKNOWN_PROBLEM = "could not recognise this file as a Stable Diffusion 1.x, 2.x or SDXL checkpoint"

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
_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
_LORA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
_LORA_PARTS = (".lora_down.weight", ".lora_A.weight", ".lora_up.", "lora.down.weight")  # last: old diffusers
_V_PARAM = re.compile(r"""^\s*parameterization\s*:\s*["']?v["']?\s*(#.*)?$""", re.MULTILINE)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header; offsets are relative to the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated safetensors header: every tensor's bytes lie inside the file, none overlap."""

    path: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_offset: int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: info.shape for name, info in self.tensors.items()}


# --------------------------------------------------------------------------------------------
# Bytes
# --------------------------------------------------------------------------------------------


def sniff(path: str | os.PathLike[str]) -> str:
    """The file's format from its first bytes (never its extension).

    One of "safetensors", "pickle", "torch-zip", "lfs-pointer", "empty", "gguf", "unknown".
    A folder, a missing path or anything that is not a regular file is "unknown".
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return "unknown"
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return "unknown"
    return _sniff_head(head, st.st_size)


def _sniff_head(head: bytes, size: int) -> str:
    if size == 0 or not head:
        return "empty"
    if head.startswith(b"version https://git-lfs"):
        return "lfs-pointer"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head.startswith(b"GGUF"):
        return "gguf"
    looks_st = len(head) >= 9 and head[8:9] == b"{"
    looks_pickle = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    if looks_st and looks_pickle:
        # A header length whose low byte is 0x80 and next byte 2..5 reads like a pickle opcode;
        # a real pickle's first 8 bytes read as a length far beyond the file.
        return "safetensors" if struct.unpack("<Q", head[:8])[0] <= size - 8 else "pickle"
    if looks_st:
        return "safetensors"
    if looks_pickle:
        return "pickle"
    return "unknown"


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Read and fully validate a safetensors header, reading only its first 8 + N bytes.

    Raises ModelError (UnsafeModelFile for pickles and torch zips, UnsupportedModel for GGUF)
    whose ``problem`` is one plain-language line.
    """
    spath = os.fspath(path)
    try:
        st = os.stat(spath)
        if stat.S_ISDIR(st.st_mode):
            raise ModelError(spath, "is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(spath, "is not a regular file")
        size = st.st_size
        with open(spath, "rb") as f:
            head = f.read(32)
            kind = _sniff_head(head, size)
            if kind == "unknown" and _damaged_header_start(head, size):
                kind = "safetensors"  # parse it, so the message says what is wrong with the header
            if kind != "safetensors":
                _raise_not_safetensors(spath, kind, head, size)
            (n,) = struct.unpack("<Q", head[:8])
            if n > MAX_HEADER_BYTES:
                raise ModelError(spath, f"header length {n:,} bytes is implausible (over 100 MB): "
                                 "the file is damaged or not a safetensors file")
            if 8 + n > size:
                raise ModelError(spath, f"the header length ({_human(n)}) runs past the end of the file "
                                 f"({_human(size)}): the file is truncated or not a safetensors file")
            f.seek(8)
            raw = f.read(n)
    except FileNotFoundError:
        raise ModelError(spath, "not found") from None
    except OSError as e:
        raise ModelError(spath, f"cannot be read: {e.strerror or e}") from None
    if len(raw) != n:  # the file shrank while we read it
        raise ModelError(spath, "truncated while reading its header")
    return _parse_header(spath, raw, size)


def _damaged_header_start(head: bytes, size: int) -> bool:
    """A plausible header length followed by JSON that is not an object: worth a precise message."""
    if len(head) < 9 or head[8:9] not in (b"[", b" ", b"\t", b"\r", b"\n"):
        return False
    return 10 <= 8 + struct.unpack("<Q", head[:8])[0] <= size


def _raise_not_safetensors(spath: str, kind: str, head: bytes, size: int) -> None:
    if kind == "empty":
        raise ModelError(spath, EMPTY_PROBLEM)
    if kind == "lfs-pointer":
        raise ModelError(spath, LFS_PROBLEM)
    if kind == "pickle":
        raise UnsafeModelFile(spath, PICKLE_PROBLEM)
    if kind == "torch-zip":
        if _zip_without_pickle(spath):
            raise ModelError(spath, "this is a zip archive, not a model file: unpack it first")
        raise UnsafeModelFile(spath, PICKLE_PROBLEM)
    if kind == "gguf":
        raise UnsupportedModel(spath, "GGUF model files are not supported yet: use a .safetensors version of this model")
    if head.lstrip()[:1] == b"<" and b"html" in head.lower():
        raise ModelError(spath, "this is a web page (HTML), not a model: the download saved an error or login page")
    if size < 9:
        raise ModelError(spath, f"only {_human(size)}: too small to be a model; the download or copy did not finish")
    raise ModelError(spath, "not a safetensors file or a diffusers folder: Easel cannot read this format")


def _zip_without_pickle(spath: str) -> bool:
    """True only when the zip's directory lists no pickle at all (then it is a plain archive)."""
    import zipfile  # lazy: rarely needed

    try:
        with zipfile.ZipFile(spath) as z:  # reads the central directory only
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False  # a damaged torch zip is still a torch zip: stay on the safe side
    return not any(name.endswith(".pkl") or "/data/" in name for name in names)


def _parse_header(spath: str, raw: bytes, size: int) -> SafetensorsHeader:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(spath, "the header is not UTF-8 text: the file is damaged or not a safetensors file") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        where = f" ({e.msg} at character {e.pos})" if isinstance(e, json.JSONDecodeError) else ""
        raise ModelError(spath, f"the header is not valid JSON{where}: the file is damaged or not a safetensors file") from None
    if not isinstance(obj, dict):
        raise ModelError(spath, "the header is not a JSON object: the file is damaged or not a safetensors file")

    metadata = obj.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelError(spath, "the header's __metadata__ is not a map of text to text: the file is damaged")

    tensors: dict[str, TensorInfo] = {}
    for name, entry in obj.items():
        tensors[name] = _tensor_info(spath, name, entry)

    data_offset = 8 + len(raw)
    _check_layout(spath, tensors, size - data_offset, size, data_offset)
    return SafetensorsHeader(spath, tensors, dict(metadata), data_offset)


def _tensor_info(spath: str, name: str, entry: object) -> TensorInfo:
    q = _q(name)
    if not isinstance(entry, dict):
        raise ModelError(spath, f"tensor {q} has a malformed header entry: the file is damaged")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise ModelError(spath, f"tensor {q} has no {key} in the header: the file is damaged")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPE_BITS:
        raise ModelError(spath, f"tensor {q} has an unknown dtype {_q(str(dtype))}: the file is damaged or too new")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise ModelError(spath, f"tensor {q} has a malformed shape in the header: the file is damaged")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise ModelError(spath, f"tensor {q} has malformed data_offsets in the header: the file is damaged")
    numel = 1
    for d in shape:
        numel *= d
    bits = numel * _DTYPE_BITS[dtype]
    need = bits // 8
    have = offsets[1] - offsets[0]
    if bits % 8 or need != have:
        raise ModelError(spath, f"tensor {q} is {dtype} {list(shape)} ({need:,} bytes) but its data_offsets span "
                         f"{have:,} bytes: the header is damaged")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def _check_layout(spath: str, tensors: dict[str, TensorInfo], data_len: int, size: int, data_offset: int) -> None:
    ordered = sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end))
    pos, prev, gap = 0, None, None
    for name, info in ordered:
        if info.start < pos:
            raise ModelError(spath, f"tensors {_q(prev)} and {_q(name)} overlap in the file: the header is damaged")
        if info.start > pos and gap is None:
            gap = (name, info.start - pos)
        pos, prev = info.end, name
    if pos > data_len:
        if gap is None:
            a, b = _human_pair(size, data_offset + pos)
            raise ModelError(spath, f"truncated: the file is {a} but its header describes {b}; the download did not finish")
        name, info = next((n, i) for n, i in ordered if i.end > data_len)
        raise ModelError(spath, f"tensor {_q(name)} has data_offsets {info.start:,}-{info.end:,}, past the end of "
                         f"the file (its data section holds {data_len:,} bytes): the file is damaged")
    if gap is not None:
        raise ModelError(spath, f"{gap[1]:,} bytes before tensor {_q(gap[0])} belong to no tensor "
                         "(a gap in the header's data_offsets): the file is damaged")
    if pos < data_len:
        raise ModelError(spath, f"{data_len - pos:,} bytes after the last tensor are not described by the header: "
                         "the file is damaged or was written by a broken tool")


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _q(text: str | None) -> str:
    """A name from a file, quoted for a one-line message: control and line-break characters escaped."""
    text = "" if text is None else text
    if len(text) > 80:
        text = text[:77] + "..."
    return json.dumps(text)  # ensure_ascii escapes \n, \u2028 and every other line break


def _human(n: int) -> str:
    """Decimal units, one decimal place: 1,932,735,283 -> "1.9 GB"."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return "1 byte" if n == 1 else f"{n} bytes"


def _human_pair(a: int, b: int) -> tuple[str, str]:
    ha, hb = _human(a), _human(b)
    if ha == hb:  # a file one byte short must not read "2.1 GB but ... 2.1 GB"
        return f"{ha} ({a:,} bytes)", f"{hb} ({b:,} bytes)"
    return ha, hb


# --------------------------------------------------------------------------------------------
# What a header describes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    kind: str
    family: str = ""
    problem: str | None = None
    error: type[ModelError] | None = None


def _unsupported(what: str, family: str = "") -> _Verdict:
    return _Verdict("unknown", family, f"{what} are not supported yet", UnsupportedModel)


def _classify(header: SafetensorsHeader, name: str) -> _Verdict:
    tensors = header.tensors
    names = list(tensors)

    def has(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in names)

    # 1. Add-ons and other architectures, told by names that full SD checkpoints never carry.
    if has(*_LORA_PREFIXES) or any(part in k for k in names for part in _LORA_PARTS):
        return _Verdict("lora", _lora_family(header), f"this is a LoRA, not a checkpoint: use it in a prompt as <lora:{name}:0.8>",
                        UnsupportedModel)
    if has("model.diffusion_model.joint_blocks.", "joint_blocks."):
        return _unsupported("SD3 checkpoints")
    if has("double_blocks.", "model.diffusion_model.double_blocks."):
        return _unsupported("Flux checkpoints")
    if has("control_model.", "controlnet_cond_embedding.") or (has("input_hint_block.") and has("zero_convs.")):
        return _unsupported("ControlNet models")

    # 2. An original-layout (LDM / A1111 / ComfyUI) Stable Diffusion checkpoint.
    if _UNET_IN in tensors:
        return _classify_checkpoint(header, has)

    # 3. Files that are useful, just not as a generator.
    if "emb_params" in tensors or has("string_to_param.") or ("clip_l" in tensors and "clip_g" in tensors):
        return _Verdict("embedding", _embedding_family(header),
                        "this is a textual-inversion embedding, not a checkpoint: use its name in a prompt",
                        UnsupportedModel)
    if ({"encoder.conv_in.weight", "decoder.conv_out.weight"} <= tensors.keys()
            or {"first_stage_model.encoder.conv_in.weight", "first_stage_model.decoder.conv_out.weight"} <= tensors.keys()):
        return _Verdict("vae", _metadata_family(header.metadata),
                        "this is a VAE alone, not a checkpoint: it can replace a checkpoint's VAE", UnsupportedModel)
    if ("conv_first.weight" in tensors and has("body.")) or ("model.0.weight" in tensors and has("model.1.sub.")):
        return _Verdict("upscaler", "", UPSCALER_PROBLEM, UnsupportedModel)
    if "conv_in.weight" in tensors and has("time_embedding.") and has("down_blocks."):
        return _Verdict("unknown", "", "this is only the UNet of a diffusers model: open the model's folder "
                        "(the one with model_index.json) instead", UnsupportedModel)
    return _Verdict("unknown", "", UNKNOWN_PROBLEM, UnsupportedModel)


def _classify_checkpoint(header: SafetensorsHeader, has) -> _Verdict:
    tensors = header.tensors
    if has("conditioner.embedders.0.transformer.") and has("conditioner.embedders.1.model."):
        family = "sdxl"
    elif has("conditioner.embedders.0.model.") and not has("conditioner.embedders.1."):
        return _unsupported("SDXL refiner checkpoints", "sdxl")
    elif has("embedder.model.visual.", "noise_augmentor."):
        return _unsupported("unCLIP checkpoints", "sd2")
    elif has("cond_stage_model.model."):
        family = "sd2"
    elif has("cond_stage_model.transformer."):
        family = "sd1"
    elif has("conditioner.", "cond_stage_model."):
        return _Verdict("unknown", "", UNKNOWN_PROBLEM + " (unrecognised text encoder)", UnsupportedModel)
    else:
        family = "sdxl" if has("model.diffusion_model.label_emb.") else ""
        return _Verdict("checkpoint", family, "this checkpoint holds no text encoder (only the UNet): "
                        "Easel needs a full checkpoint", UnsupportedModel)

    shape = tensors[_UNET_IN].shape
    channels = shape[1] if len(shape) == 4 else None
    if channels == 4:
        return _Verdict("checkpoint", family)
    if channels == 9:
        return _Verdict("inpaint", family)
    special = {5: "depth-to-image checkpoints (5 input channels)", 8: "InstructPix2Pix checkpoints (8 input channels)"}
    if channels in special:
        return _unsupported(special[channels], family)
    return _Verdict("unknown", family, f"the UNet takes {channels} input channels (4 = normal, 9 = inpainting): "
                    "this kind of checkpoint is not supported yet", UnsupportedModel)


def _lora_family(header: SafetensorsHeader) -> str:
    names = header.tensors
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.", "te2.")) for k in names):
        return "sdxl"
    for key, info in names.items():  # cross-attention input width = the text encoder's width
        if "attn2" in key and "to_k" in key and key.endswith(("lora_down.weight", "lora_A.weight")) and len(info.shape) == 2:
            family = {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(info.shape[1])
            if family:
                return family
    return _metadata_family(header.metadata)


def _embedding_family(header: SafetensorsHeader) -> str:
    tensors = header.tensors
    if "clip_l" in tensors and "clip_g" in tensors:
        return "sdxl"
    info = tensors.get("emb_params") or next((i for k, i in tensors.items() if k.startswith("string_to_param.")), None)
    if info is not None and info.shape:
        family = {768: "sd1", 1024: "sd2"}.get(info.shape[-1])
        if family:
            return family
    return _metadata_family(header.metadata)


def _metadata_family(metadata: dict[str, str]) -> str:
    """Best effort from the modelspec / kohya training metadata some files carry."""
    text = f"{metadata.get('modelspec.architecture', '')} {metadata.get('ss_base_model_version', '')}".lower()
    if "xl" in text:
        return "sdxl"
    if "v2" in text:
        return "sd2"
    if "v1" in text:
        return "sd1"
    return ""


def _prediction_type(header: SafetensorsHeader, family: str, kind: str = "checkpoint") -> str:
    declared = header.metadata.get("modelspec.prediction_type", "").strip().lower()
    if declared in ("v", "v_prediction", "v-prediction"):
        return "v_prediction"
    if declared in ("epsilon", "eps"):
        return "epsilon"
    sidecar = Path(os.path.splitext(header.path)[0] + ".yaml")
    try:
        with open(sidecar, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        text = None
    if text is not None:  # A1111 loads the model with this config: no "parameterization: v" means eps
        return "v_prediction" if _V_PARAM.search(text) else "epsilon"
    if "v_pred" in header.tensors:
        return "v_prediction"
    # SD 2.x text-to-image checkpoints are mostly the 768 v models; SD 2 inpainting is epsilon.
    return "v_prediction" if family == "sd2" and kind == "checkpoint" else "epsilon"


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
                         problem=f"could not be inspected: {_q(str(e))[1:-1]}")


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
        return _examine_folder(spath)
    return _examine_file(spath, st.st_size)


def _examine_file(spath: str, size: int) -> tuple[ModelInfo, type[ModelError] | None]:
    name = Path(spath).stem
    try:
        header = read_header(spath)
    except ModelError as e:
        return ModelInfo(spath, name, "unknown", "", sniff(spath), size_bytes=size, problem=e.problem), type(e)
    verdict = _classify(header, name)
    runnable = verdict.kind in ("checkpoint", "inpaint")
    prediction = _prediction_type(header, verdict.family if runnable else "", verdict.kind)
    variant = "turbo" if runnable and _looks_turbo(name, header.metadata) else ""
    if variant and "modelspec.prediction_type" not in header.metadata:
        prediction = "epsilon"  # SD-Turbo is an epsilon model although SD 2.x files default to v here
    info = ModelInfo(spath, name, verdict.kind, verdict.family, "safetensors", prediction, size, verdict.problem,
                     variant)
    return info, verdict.error


def _looks_turbo(name: str, metadata: dict[str, str]) -> bool:
    """SD-Turbo / SDXL-Turbo (adversarially distilled): said by modelspec metadata or the name."""
    text = " ".join(metadata.get(k, "") for k in ("modelspec.title", "modelspec.architecture", "modelspec.description",
                                                 "modelspec.implementation"))
    return "turbo" in f"{text} {name}".lower()


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
        with open(path, "rb") as f:
            raw = f.read(10_000_001)
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


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The file's full SHA-256 as hex, read in ``chunk``-byte pieces (whole file: run off the GUI thread)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def hash_target(path: str | os.PathLike[str]) -> Path:
    """The file whose hash stands for ``path``: the file itself, or a diffusers folder's unet (or
    transformer) weights: ``diffusion_pytorch_model.safetensors`` when present, else the first
    ``*.safetensors`` by name. Raises ModelError for a folder with nothing to hash."""
    target = Path(path)
    if not target.is_dir():
        return target
    unet = target / "unet"
    if not unet.is_dir() and (target / "transformer").is_dir():  # aMUSEd and other transformer models
        unet = target / "transformer"
    preferred = unet / "diffusion_pytorch_model.safetensors"
    files = [preferred] if preferred.is_file() else _weight_files(unet)
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

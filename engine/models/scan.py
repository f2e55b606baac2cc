"""Walk model folders and say what every model file in them is, from headers only.

A walk collects ``.safetensors`` files, diffusers folders (``model_index.json``; not descended into),
tiny-autoencoder folders (TAESD, for previews) and pickle files (``.ckpt``/``.pt``/``.pth``: listed
as "convert to .safetensors", never opened). Each candidate is judged by
``engine.files.probe.inspect_model``; results are remembered by (path, size, mtime) in a JSON file, so
a warm scan only ``stat``s. Runs on any thread that is not the GUI thread (the app's I/O thread).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from engine.api import ModelInfo
from engine.files.safe import open_regular, read_json
from engine.models.locations import ScanRoot
from engine.lazy import LazyModule
from engine.outputs import write_text_atomic

# What a file is (headers, folders, control models): first needed by a scan, which runs after the
# window is shown, on the I/O thread; not paid for on the desktop app's start-up path.
control = LazyModule("engine.files.control")
probe = LazyModule("engine.files.probe")

log = logging.getLogger(__name__)

MAX_DEPTH = 6  # InvokeAI nests models/<base>/<type>/<name>/...; the HF cache models--x/snapshots/<rev>/...
CACHE_VERSION = 5  # 3: ControlNets are kind "controlnet"; .gguf files. 4: IP-Adapters, CLIP vision encoders.
# 5: FLUX.1 / Z-Image control models, FLUX.1 Redux, SigLIP
_MODEL_SUFFIXES = (".safetensors", ".sft", ".gguf")  # a .gguf is judged by its bytes like the rest
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth")
_SKIP_DIRS = {"blobs", "refs", ".locks", "__pycache__", "node_modules", ".git", "venv", ".venv"}

KIND_LABELS = {
    "checkpoint": "checkpoint",
    "inpaint": "inpainting checkpoint",
    "lora": "LoRA",
    "embedding": "embedding",
    "vae": "VAE",
    "upscaler": "upscaler",
    "controlnet": "control model",
    "ipadapter": "IP-Adapter",
    "redux": "reference model (Redux)",
    "clipvision": "image encoder",
    "taesd": "preview decoder",
    "unknown": "unusable",
}
PICKLE_SHORT = "pickle file: convert it to .safetensors"


@dataclass(frozen=True)
class ModelEntry:
    """One model file or folder: what it is (``info``), which tool's folder it is in (``source``)."""

    info: ModelInfo
    source: str

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def family(self) -> str:
        return self.info.family

    @property
    def usable(self) -> bool:
        """Usable for what it is: a checkpoint to generate with, a LoRA/embedding/VAE as an add-on."""
        if self.info.format in ("pickle", "torch-zip"):
            return False
        if self.kind in ("checkpoint", "inpaint"):
            return self.info.problem is None
        if self.kind == "controlnet":  # a ControlNet: usable as a control when its family is known
            return control.runnable(self.family, self.info.variant) and self.info.format != "unknown"
        if self.kind == "ipadapter":  # an IP-Adapter: usable with reference images unless of a kind Easel cannot run
            return self.info.variant not in ("faceid", "unknown")
        return self.kind in ("lora", "embedding", "vae", "upscaler", "taesd", "clipvision", "redux")

    @property
    def convertible(self) -> bool:
        """A pickle Easel can offer to convert to .safetensors (in a separate process)."""
        return self.info.format in ("pickle", "torch-zip")

    @property
    def reason(self) -> str:
        """Why the file cannot be used, in a few plain words ("" when it can)."""
        if self.convertible:
            return PICKLE_SHORT
        return "" if self.usable else (self.info.problem or "not recognised")

    def to_dict(self) -> dict:
        return {
            "name": self.name, "path": self.path, "kind": self.kind, "kind_label": KIND_LABELS.get(self.kind, self.kind),
            "family": self.family, "format": self.info.format, "size_bytes": self.info.size_bytes,
            "source": self.source, "usable": self.usable, "problem": self.reason or None,
            "prediction_type": self.info.prediction_type,
            **({"control_kind": self.info.variant} if self.kind == "controlnet" else {}),
        }


def walk(root: ScanRoot) -> list[tuple[str, str]]:
    """Candidate paths under ``root`` as (path, what): what is "file", "folder", "pickle", "taesd" or
    "controlnet" (a diffusers ControlNet folder)."""
    out: list[tuple[str, str]] = []
    start = root.path
    if not os.path.isdir(start):
        return out
    stack = [(start, 0)]
    seen_dirs: set[tuple[int, int]] = set()
    while stack:
        folder, depth = stack.pop()
        try:
            st = os.stat(folder)
            ident = (st.st_dev, st.st_ino)
            if ident in seen_dirs:  # a symlink loop
                continue
            seen_dirs.add(ident)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        names = {e.name for e in entries}
        if "model_index.json" in names:
            out.append((folder, "folder"))
            continue
        if "config.json" in names and _is_taesd(folder):
            out.append((folder, "taesd"))
            continue
        if "config.json" in names and control.is_control_folder(folder):
            out.append((folder, "controlnet"))
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            if is_dir:
                if depth < MAX_DEPTH and e.name not in _SKIP_DIRS:
                    subdirs.append((e.path, depth + 1))
                continue
            lower = e.name.lower()
            if lower.endswith(_MODEL_SUFFIXES):
                out.append((e.path, "file"))
            elif lower.endswith(_PICKLE_SUFFIXES):
                out.append((e.path, "pickle"))
        stack.extend(reversed(subdirs))
    return out


_UPSCALER_DIRS = {"esrgan", "realesrgan", "upscale_models", "swinir", "ldsr", "dat"}


def _pth_upscaler(path: str) -> bool:
    return path.lower().endswith(".pth") and any(part.lower() in _UPSCALER_DIRS for part in Path(path).parts[-4:-1])


def _is_taesd(folder: str) -> bool:
    try:
        with open_regular(os.path.join(folder, "config.json")) as f:  # a FIFO must not block the scan
            head = f.read(4096)
    except OSError:
        return False
    return b'"AutoencoderTiny"' in head


def taesd_info(folder: str) -> ModelInfo:
    name = Path(folder).name
    if name == "snapshots" or len(name) == 40:  # HF cache: name it after the repo
        name = next((p.name for p in Path(folder).parents if p.name.startswith("models--")), name)
        name = name.removeprefix("models--").replace("--", "/")
    low = name.lower()
    family = "flux" if "taef1" in low else "sdxl" if "xl" in low else "sd1"
    return ModelInfo(folder, name, "taesd", family, "diffusers")


class EntryCache:
    """What each file was found to be, keyed by path and valid while its size and mtime hold."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else None
        self.data: dict[str, dict] = {}
        self.dirty = False
        if self.path and self.path.is_file():
            try:
                loaded = read_json(self.path)
                if isinstance(loaded, dict) and loaded.get("version") == CACHE_VERSION:
                    self.data = loaded.get("entries", {})
            except (OSError, ValueError):
                pass

    def inspect(self, path: str, what: str) -> ModelInfo:
        try:
            st = os.stat(path if what not in ("folder", "controlnet") else
                         os.path.join(path, "model_index.json" if what == "folder" else "config.json"))
        except OSError:
            return probe.inspect_model(path)
        stamp = [st.st_size, st.st_mtime_ns]
        if what == "folder":  # a cascade stage's verdict depends on its siblings (engine.families.deepfloyd_if.files)
            try:
                stamp.append(os.stat(os.path.dirname(path) or ".").st_mtime_ns)
            except OSError:
                pass
        hit = self.data.get(path)
        if hit and hit.get("stamp") == stamp:
            try:
                return ModelInfo(**hit["info"])
            except TypeError:
                pass
        info = taesd_info(path) if what == "taesd" else probe.inspect_model(path)
        self.data[path] = {"stamp": stamp, "info": dataclasses.asdict(info)}
        self.dirty = True
        return info

    def save(self) -> None:
        if not self.path or not self.dirty:
            return
        try:
            write_text_atomic(self.path, json.dumps({"version": CACHE_VERSION, "entries": self.data}))
            self.dirty = False
        except OSError:
            log.warning("could not save the library cache %s", self.path, exc_info=True)


def scan_roots(roots: list[ScanRoot], cache: EntryCache) -> list[ModelEntry]:
    """Every candidate under ``roots`` judged (files reached twice, by links or overlapping roots, once)."""
    seen: set[str] = set()
    entries: list[ModelEntry] = []
    for root in roots:
        for path, what in walk(root):
            try:
                real = os.path.realpath(path)
            except OSError:
                real = path
            if real in seen:
                continue
            seen.add(real)
            try:
                if what == "pickle" and _pth_upscaler(path):
                    # ESRGAN-style .pth in an upscaler folder: engine.upscale reads these weights-only.
                    info = ModelInfo(path, Path(path).stem, "upscaler", "", "pth", size_bytes=os.path.getsize(path))
                else:
                    info = cache.inspect(path, what)
            except Exception as exc:  # noqa: BLE001 - one odd file must not end the scan
                log.warning("inspecting %s failed: %s", path, exc)
                continue
            entries.append(ModelEntry(info, root.source))
    return entries

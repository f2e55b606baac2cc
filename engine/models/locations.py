"""Where other tools keep their models, per platform: AUTOMATIC1111 (and Forge), ComfyUI, InvokeAI,
and the Hugging Face hub cache. Easel reads those folders in place and never copies from them.

Only the standard stdlib is used, so this is cheap to import on any thread.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Sub-folders of an install that hold models, per tool (a hint for the list; kind still comes from headers).
A1111_FOLDERS = ("models/Stable-diffusion", "models/Lora", "models/LyCORIS", "models/VAE", "embeddings",
                 "models/ESRGAN", "models/RealESRGAN", "models/VAE-approx", "models/ControlNet",
                 "extensions/sd-webui-controlnet/models")  # the ControlNet extension's own folder (older installs)
COMFYUI_FOLDERS = ("models/checkpoints", "models/loras", "models/vae", "models/embeddings",
                   "models/upscale_models", "models/diffusers", "models/vae_approx", "models/diffusion_models",
                   "models/unet", "models/controlnet", "models/ipadapter", "models/clip_vision",
                   "models/style_models")  # style_models: FLUX.1 Redux
INVOKEAI_FOLDERS = ("models",)

_A1111_NAMES = ("stable-diffusion-webui", "stable-diffusion-webui-forge", "sd-webui", "webui", "forge")
_COMFY_NAMES = ("ComfyUI", "comfyui", "ComfyUI_windows_portable/ComfyUI", "Documents/ComfyUI")
_INVOKE_NAMES = ("invokeai", "InvokeAI", "Documents/invokeai")


@dataclass(frozen=True)
class ScanRoot:
    """A folder to scan and which tool it belongs to ("A1111", "ComfyUI", "InvokeAI", "Hugging Face", "folder")."""

    path: str
    source: str


def install_roots(home: Path | None = None) -> list[ScanRoot]:
    """Install folders of the known tools that exist on this machine (each one level of guessing:
    the usual names in the home folder, the drive roots on Windows, and $INVOKEAI_ROOT)."""
    home = Path(home) if home else Path.home()
    bases = [home, home / "AI", home / "ai", home / "Applications", home / "src", home / "git"]
    if sys.platform == "win32":
        bases += [Path(f"{d}:\\") for d in "CDEF"]
    roots: list[ScanRoot] = []
    for base in bases:
        for name in _A1111_NAMES:
            roots.append(ScanRoot(str(base / name), "A1111"))
        for name in _COMFY_NAMES:
            roots.append(ScanRoot(str(base / name), "ComfyUI"))
        for name in _INVOKE_NAMES:
            roots.append(ScanRoot(str(base / name), "InvokeAI"))
    if os.environ.get("INVOKEAI_ROOT"):
        roots.append(ScanRoot(os.environ["INVOKEAI_ROOT"], "InvokeAI"))
    return [r for r in roots if os.path.isdir(r.path)]


def model_folders(root: ScanRoot) -> list[ScanRoot]:
    """The model folders inside one install (those that exist)."""
    subs = {"A1111": A1111_FOLDERS, "ComfyUI": COMFYUI_FOLDERS, "InvokeAI": INVOKEAI_FOLDERS}.get(root.source)
    if subs is None:
        return [root]
    found = [ScanRoot(os.path.join(root.path, *s.split("/")), root.source) for s in subs]
    return [f for f in found if os.path.isdir(f.path)]


def hf_hub_cache() -> str:
    """The Hugging Face hub cache folder, as huggingface_hub computes it (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.path.expanduser(os.environ["HUGGINGFACE_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(os.path.expanduser(hf_home), "hub")


def default_roots(home: Path | None = None) -> list[ScanRoot]:
    """Every model folder of the tools installed here, plus the Hugging Face cache if it exists."""
    roots = [folder for root in install_roots(home) for folder in model_folders(root)]
    cache = hf_hub_cache()
    if os.path.isdir(cache):
        roots.append(ScanRoot(cache, "Hugging Face"))
    return roots


def guess_source(path: str) -> str:
    """Which tool a user-added folder belongs to, from its layout (for the list's "from" column)."""
    p = Path(path)
    for parent in (p, *p.parents[:3]):
        if (parent / "webui.py").is_file() or (parent / "models" / "Stable-diffusion").is_dir():
            return "A1111"
        if (parent / "comfy").is_dir() or (parent / "models" / "checkpoints").is_dir():
            return "ComfyUI"
        if (parent / "invokeai.yaml").is_file() or (parent / "invokeai.db").is_file():
            return "InvokeAI"
    if p.name == "hub" and any(c.name.startswith("models--") for c in _children(p)):
        return "Hugging Face"
    return "folder"


def expand_root(path: str) -> list[ScanRoot]:
    """A folder the user added: an install root becomes its model folders; anything else is scanned as is."""
    source = guess_source(path)
    if source in ("A1111", "ComfyUI", "InvokeAI") and Path(path, "models").is_dir():
        folders = model_folders(ScanRoot(path, source))
        if folders:
            return folders
    return [ScanRoot(path, source)]


def _children(p: Path) -> list[Path]:
    try:
        return list(p.iterdir())[:200]
    except OSError:
        return []

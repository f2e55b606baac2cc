"""What the bundle leaves out, shared by the spec and by check_contents.py (which proves it safe).

Edit here, then run `python packaging/check_contents.py` (a minute) before a full build (many).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Never needed at run time. Some are optional imports of torch, diffusers or huggingface_hub that a
# developer's environment happens to have (test and cloud tools); left in, they add minutes and MBs.
# Not torch.testing._internal: torch.utils.checkpoint imports it, and diffusers imports that.
EXCLUDES = [
    "tkinter", "matplotlib", "IPython", "jedi", "parso", "prompt_toolkit", "pandas", "sklearn", "tensorflow",
    "keras", "jax", "flax", "onnx", "onnxruntime", "torchvision", "torchaudio", "triton", "tensorboard",
    "torch.utils.tensorboard", "expecttest", "hypothesis", "pytest", "_pytest",
    "pytestqt", "importlinter", "grimp", "PyQt5", "PyQt6", "PySide2", "sphinx", "docutils", "notebook",
    "nbformat", "boto3", "botocore", "s3transfer", "awscli", "moto", "flask", "werkzeug", "docker", "cfnlint",
    "samtranslator", "aws_xray_sdk", "libcst", "trio", "graphql", "py_spy",
]

# Imported only when a feature runs, so neither the start-up imports nor the self-test load them: OpenCV
# (the canny / line-art / scribble preprocessors), psd-tools (the canvas's .psd export), gguf (GGUF
# transformers), and the Pillow modules the app imports by name on first use (engine.lazy.LazyModule, which
# PyInstaller's import scan cannot see). check_contents.py imports each with EXCLUDES blocked: one left out
# of the bundle fails there.
LAZY_PIL_MODULES = ("PIL.Image", "PIL.ImageDraw", "PIL.ImageFilter", "PIL.ImageOps")
FEATURE_IMPORTS = ("cv2", "psd_tools", "psd_tools.api.layers", "gguf", *LAZY_PIL_MODULES)

# transformers names every one of its ~550 model families in an `if TYPE_CHECKING:` import block, so
# PyInstaller's import scan would walk and bundle all of them (many minutes, ~100 MB of modules).
# Keep the families something imports at run time: CLIP (the SD text and image encoders, compel), auto
# (Auto* classes), the ones peft imports (bloom, encoder_decoder), and the ones diffusers' pipeline
# modules import when the engine's start-up warms AutoPipelineFor* (which imports every pipeline).
# check_contents.py lists what the app really imports and fails when a family here is missing.
TRANSFORMERS_MODEL_FAMILIES = {
    "auto", "bert", "bloom", "byt5", "clap", "clip", "dinov2_with_registers", "encoder_decoder", "gemma",
    "gemma2", "glm", "glm_image", "gpt2", "mistral3", "qwen2", "qwen2_5_vl", "qwen2_vl", "qwen3", "qwen3_vl",
    "roberta", "siglip", "siglip2", "speecht5", "t5", "t5gemma", "umt5", "vit_mae", "vits", "xlm_roberta",
}


def transformers_family_excludes() -> list[str]:
    """``transformers.models.<family>`` for every installed family not in TRANSFORMERS_MODEL_FAMILIES."""
    spec = importlib.util.find_spec("transformers")
    models = Path(spec.submodule_search_locations[0]) / "models"
    return [f"transformers.models.{d.name}" for d in sorted(models.iterdir())
            if d.is_dir() and (d / "__init__.py").is_file() and d.name not in TRANSFORMERS_MODEL_FAMILIES]


def all_excludes() -> list[str]:
    return EXCLUDES + transformers_family_excludes()

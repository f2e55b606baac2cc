"""All-in-one SD 3.5 ``.safetensors`` files (ComfyUI / Stability layout: ``model.diffusion_model.``
MMDiT, ``text_encoders.clip_l|clip_g|t5xxl.`` and ``first_stage_model.`` VAE), loaded through
``StableDiffusion3Pipeline.from_single_file`` with a config folder written from the bundled real
configs resized to the file's shapes (``configs``), so nothing is ever fetched.

A single file carries no tokenizers: the CLIP ones are bundled; T5's is looked for beside the file
(a ``t5xxl_tokenizer`` folder holding tokenizer.json or spiece.model), in ComfyUI's install or the
Hugging Face cache. Without it, or without T5
weights in the file, the model runs on its CLIP encoders (one notice says so and what to add).
Engine thread.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from engine.api import ModelError, ModelInfo
from engine.core.loading import LOAD_ERRORS, load_failed, quiet_libraries
from engine.families.sd3 import configs
from engine.files.headers import read_header

T5_TOKENIZER_DIR = "t5xxl_tokenizer"  # what engine.files.split.find_tokenizer looks for beside the file first


def t5_tokenizer_dir(path: str) -> Path | None:
    """The T5 tokenizer folder for the single file ``path`` (beside it, in ComfyUI's install or the
    Hugging Face cache: ``engine.files.split.find_tokenizer``), or None."""
    from engine.files import split

    try:
        return split.find_tokenizer("t5xxl", path)
    except split.MissingPart:
        return None


def load_single_file(info: ModelInfo, dtype) -> tuple[object, tuple[str, ...]]:
    """(pipeline, load notices) for the all-in-one file ``info``. Raises ModelError (one line)."""
    import diffusers
    from transformers import T5TokenizerFast

    from engine.tokenizers import bundled_tokenizer

    quiet_libraries()
    shapes = read_header(info.path).shapes()
    notices: list[str] = []
    kwargs = {"tokenizer": bundled_tokenizer("clip"), "tokenizer_2": bundled_tokenizer("clip-pad-bang")}
    tokenizer_dir = t5_tokenizer_dir(info.path)
    if not configs.has_t5(shapes):
        kwargs.update(text_encoder_3=None, tokenizer_3=None)  # the NO_T5 notice comes with every image
    elif tokenizer_dir is None:
        kwargs.update(text_encoder_3=None, tokenizer_3=None)
        notices.append(f"The T5 tokenizer is not on this computer, so {info.name}'s T5 encoder was left out: put "
                       f"tokenizer.json (or spiece.model) in {Path(info.path).resolve().parent / T5_TOKENIZER_DIR} "
                       "(the tokenizer_3 folder of stabilityai/stable-diffusion-3.5-large) to use it.")
    try:
        if tokenizer_dir is not None and "text_encoder_3" not in kwargs:
            kwargs["tokenizer_3"] = T5TokenizerFast.from_pretrained(str(tokenizer_dir), local_files_only=True)
        with tempfile.TemporaryDirectory(prefix="easel-sd3-config-") as tmp:
            config_dir = configs.single_file_config_dir(shapes, Path(tmp))
            pipe = diffusers.StableDiffusion3Pipeline.from_single_file(
                info.path, config=str(config_dir), local_files_only=True, dtype=dtype, **kwargs)
    except ModelError:
        raise
    except LOAD_ERRORS as exc:
        raise load_failed(info.name, "this SD 3.5 file", exc) from exc
    # diffusers 0.42 leaves the T5 it builds from a single file in training mode: its dropout would
    # make every image random (and worse). Every module runs in eval mode.
    for module in pipe.components.values():
        if hasattr(module, "eval"):
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe, tuple(notices)

"""Control models (ControlNets): what a file or folder is, from its header or config alone.

A ControlNet comes as one ``.safetensors`` file in A1111's original layout (``control_model.*``,
lllyasviel's releases in ``models/ControlNet``), as one file in diffusers' layout
(``controlnet_cond_embedding.*``, ``diffusers_xl_canny_mid.safetensors`` and the like), or as a
diffusers folder (``config.json`` whose ``_class_name`` is ``ControlNetModel`` or ``ControlNetUnionModel`` beside
``diffusion_pytorch_model.safetensors``; the Hugging Face cache holds these). Its family (SD 1.x /
2.x / SDXL) is read from its structure, which holds at any size: SDXL's have the addition embedding,
SD 2.x's linear transformer projections, SD 1.x's convolutional ones; a real-size file's
cross-attention width (768 / 1024 / 2048) says it directly. SDXL Union models (xinsir's
controlnet-union-sdxl-1.0 and its ProMax: ``ControlNetUnionModel``) have ``task_embedding``,
``control_add_embedding`` and ``transformer_layes`` tensors; their variant is "union". Its kind (canny, depth ...) comes from the
name, where the name says it.

FLUX.1 ControlNets (``FluxControlNetModel``: InstantX's and Shakker-Labs' canny / depth / Union, XLabs' in
diffusers' layout) come as diffusers folders or as one file in diffusers' names (``controlnet_x_embedder``,
``controlnet_blocks.N``, ``transformer_blocks.N``); a Union model has a ``controlnet_mode_embedder`` (its
variant is "union"). XLabs' original single files (BFL's ``double_blocks`` names) are recognised but
diffusers cannot load them. Z-Image's ControlNets (alibaba-pai's Z-Image-Turbo-Fun-Controlnet-Union 1.0 /
2.x: ``control_layers.N``, ``control_all_x_embedder``) are union models: one model takes any kind, told by
the image itself. Qwen-Image's (``QwenImageControlNetModel``: InstantX's Qwen-Image-ControlNet-Union, a
diffusers folder or one file in its names: ``img_in``, ``txt_in``, ``controlnet_x_embedder``,
``controlnet_blocks.N``) are union models the same way; InstantX's inpainting one (extra condition
channels) and DiffSynth's "blockwise" ControlNets (``controlnet_blocks.N.input_proj``, no transformer
blocks) are recognised and refused. Stdlib and ``engine.api`` only. Any thread.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.api import ModelError, ModelInfo, UnsupportedModel
from engine.files.headers import SafetensorsHeader, read_header
from engine.files.safe import UnreadableFile, read_bytes
from engine.files.hub import repo_name

KIND = "controlnet"
CONTROL_CLASSES = ("ControlNetModel", "ControlNetUnionModel", "FluxControlNetModel", "ZImageControlNetModel",
                   "QwenImageControlNetModel")
UNSUPPORTED_CLASSES = {"ControlNetXSAdapter": "ControlNet-XS models", "SD3ControlNetModel": "SD3 ControlNets"}
# The tensors only an SDXL Union model has (xinsir's controlnet-union-sdxl-1.0 and its ProMax)
SDXL_UNION_TENSORS = ("task_embedding", "control_add_embedding.", "control_type_proj.", "transformer_layes.")
_WIDTH_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "flux1": "FLUX.1", "zimage": "Z-Image",
                "qwen_image": "Qwen-Image"}
UNION = "union"
UNION_FAMILIES = ("sdxl", "flux1", "zimage", "qwen_image")  # the families whose Union control models Easel runs
XLABS_PROBLEM = ("XLabs' original FLUX ControlNet layout (double_blocks) cannot be loaded by the library: use its "
                 "diffusers version (a folder with config.json naming FluxControlNetModel)")
BLOCKWISE_PROBLEM = ("DiffSynth's blockwise Qwen-Image ControlNets cannot be loaded by the library: use InstantX's "
                     "Qwen-Image-ControlNet-Union")
QWEN_INPAINT_PROBLEM = "Qwen-Image inpainting ControlNets are not supported yet: use a Qwen-Image ControlNet Union"
# Words in a control model's name -> the control kind (engine.api.CONTROL_KINDS); first match wins.
_NAME_KINDS = (
    ("inpaint", "inpaint"), ("canny", "canny"), ("depth", "depth"), ("scribble", "scribble"),
    ("sketch", "scribble"), ("lineart", "lineart"), ("line_art", "lineart"), ("line-art", "lineart"),
    ("softedge", "lineart"), ("hed", "lineart"), ("pidi", "lineart"), ("openpose", "pose"), ("pose", "pose"),
    ("tile", "tile"),
)


def is_flux_control_header(header: SafetensorsHeader) -> bool:
    """A FLUX.1 ControlNet's tensor names: diffusers' (``controlnet_x_embedder``, ``controlnet_blocks.N`` beside
    ``transformer_blocks``) or XLabs' original (``controlnet_blocks.N`` beside BFL's ``double_blocks``)."""
    names = header.tensors
    blocks = any(k.startswith("controlnet_blocks.") for k in names)
    return "controlnet_x_embedder.weight" in names or blocks and any(
        k.startswith(("transformer_blocks.", "double_blocks.")) for k in names)


def is_zimage_control_header(header: SafetensorsHeader) -> bool:
    """A Z-Image (Fun) ControlNet's tensor names."""
    return any(k.startswith(("control_all_x_embedder.", "control_layers.")) for k in header.tensors)


def is_qwen_image_control_header(header: SafetensorsHeader) -> bool:
    """A Qwen-Image ControlNet's tensor names: InstantX's (diffusers' ``QwenImageControlNetModel``: ``img_in`` and
    ``txt_in`` beside ``controlnet_blocks.N``) or DiffSynth's blockwise one (``controlnet_blocks.N.input_proj``)."""
    names = header.tensors
    if not any(k.startswith("controlnet_blocks.") for k in names):
        return False
    return ("img_in.weight" in names and "txt_in.weight" in names) or is_blockwise_header(header)


def is_blockwise_header(header: SafetensorsHeader) -> bool:
    """DiffSynth's blockwise Qwen-Image ControlNet (which diffusers has no class for)."""
    return any(k.startswith("controlnet_blocks.") and ".input_proj." in k for k in header.tensors)


def is_sdxl_union_header(header: SafetensorsHeader) -> bool:
    """An SDXL ControlNet Union model's tensor names (``task_embedding``, ``control_add_embedding`` ...)."""
    return any(k.startswith(SDXL_UNION_TENSORS) for k in header.tensors)


def is_control_header(header: SafetensorsHeader) -> bool:
    """Whether the tensor names are a ControlNet's (either SD layout, FLUX.1's, Z-Image's, Qwen-Image's)."""
    names = header.tensors
    return any(k.startswith(("control_model.", "controlnet_cond_embedding.")) for k in names) or (
        any(k.startswith("input_hint_block.") for k in names) and any(k.startswith("zero_convs.") for k in names)) or (
        is_flux_control_header(header) or is_zimage_control_header(header) or is_qwen_image_control_header(header))


def runnable(family: str, variant: str) -> bool:
    """Whether Easel runs a control model of ``family`` and ``variant`` (a Union model only for ``UNION_FAMILIES``)."""
    return bool(family) and (variant != UNION or family in UNION_FAMILIES)


def kind_from_name(name: str) -> str:
    """The control kind a model's name says ("control_v11p_sd15_canny" -> "canny"), or ""."""
    low = name.lower()
    if "union" in low:
        return ""
    for word, kind in _NAME_KINDS:
        if re.search(rf"(^|[^a-z]){re.escape(word)}", low):
            return kind
    return ""


def problem_line(family: str) -> str:
    what = FAMILY_NAMES.get(family, "an unknown family")
    return f"this is a control model (ControlNet) for {what}, not a checkpoint: use it as a control (--control)"


def header_family(header: SafetensorsHeader) -> str:
    """"sd1" | "sd2" | "sdxl" for a ControlNet file, "" when its structure says none of them."""
    tensors = header.tensors
    ldm = any(k.startswith("control_model.") for k in tensors)
    prefix = "control_model." if ldm else ""
    names = [k[len(prefix):] for k in tensors if k.startswith(prefix)]
    if any(k.startswith(("label_emb.", "add_embedding.")) for k in names):
        return "sdxl"
    for key in names:
        if key.endswith("attn2.to_k.weight"):
            shape = tensors[prefix + key].shape
            if len(shape) == 2 and shape[1] in _WIDTH_FAMILY:
                return _WIDTH_FAMILY[shape[1]]
    for key in names:
        if key.endswith(".proj_in.weight"):
            return "sd2" if len(tensors[prefix + key].shape) == 2 else "sd1"
    return ""


def file_verdict(header: SafetensorsHeader, name: str) -> tuple[str, str, str | None, type[ModelError] | None]:
    """(family, variant, problem, error type) of a ControlNet file; variant = its kind from the name
    ("union" for a Union model)."""
    if is_zimage_control_header(header):
        return "zimage", UNION, problem_line("zimage"), UnsupportedModel
    if is_qwen_image_control_header(header):  # before FLUX.1's: both have controlnet_x_embedder
        if is_blockwise_header(header):
            return "", "", BLOCKWISE_PROBLEM, UnsupportedModel
        embed, img_in = header.tensors.get("controlnet_x_embedder.weight"), header.tensors["img_in.weight"]
        if embed is not None and len(embed.shape) == 2 and embed.shape[1] > img_in.shape[1]:
            return "", "inpaint", QWEN_INPAINT_PROBLEM, UnsupportedModel
        return "qwen_image", UNION, problem_line("qwen_image"), UnsupportedModel
    if is_flux_control_header(header):
        if any(k.startswith("double_blocks.") for k in header.tensors):
            return "", kind_from_name(name), XLABS_PROBLEM, UnsupportedModel
        union = "controlnet_mode_embedder.weight" in header.tensors
        return "flux1", UNION if union else kind_from_name(name), problem_line("flux1"), UnsupportedModel
    if is_sdxl_union_header(header):
        return "sdxl", UNION, problem_line("sdxl"), UnsupportedModel
    family = header_family(header)
    if not family:
        return "", "", "a ControlNet of an architecture Easel does not know", UnsupportedModel
    return family, kind_from_name(name), problem_line(family), UnsupportedModel


def is_control_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a diffusers ControlNet (its config.json names a ControlNet class)."""
    try:
        head = read_bytes(Path(folder) / "config.json", 65536)
    except (OSError, UnreadableFile):
        return False
    return any(f'"{cls}"'.encode() in head for cls in (*CONTROL_CLASSES, *UNSUPPORTED_CLASSES))


def examine_control_folder(spath: str) -> tuple[ModelInfo, type[ModelError] | None]:
    """What the diffusers ControlNet folder ``spath`` is (kind "controlnet"), or why it cannot be used."""
    root = Path(spath)
    name = repo_name(root)

    def result(family: str, variant: str, problem: str, error, size: int = 0):
        return ModelInfo(spath, name, KIND, family, "diffusers", size_bytes=size, problem=problem, variant=variant), error

    try:
        config = json.loads(read_bytes(root / "config.json", 1_000_000).decode("utf-8"))
    except (OSError, UnreadableFile, ValueError, UnicodeDecodeError):
        return result("", "", "config.json cannot be read: the folder is damaged", ModelError)
    if not isinstance(config, dict):
        return result("", "", "config.json is not a JSON object: the folder is damaged", ModelError)
    cls = config.get("_class_name")
    if cls in UNSUPPORTED_CLASSES:
        return result("", "", f"{UNSUPPORTED_CLASSES[cls]} are not supported yet", UnsupportedModel)
    weights = sorted(root.glob("*.safetensors"))
    if not weights:
        pickles = [p.name for p in root.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        what = ("only pickle weights (" + pickles[0] + "): Easel never opens these; use a .safetensors version"
                if pickles else "no weights (diffusion_pytorch_model.safetensors)")
        return result("", "", f"this ControlNet folder has {what}", UnsupportedModel if pickles else ModelError)
    try:
        header = read_header(str(weights[0]))
    except ModelError as e:
        return result("", "", f"{weights[0].name}: {e.problem}", type(e))
    family = config_family(config) or header_family(header)
    size = sum(p.stat().st_size for p in weights)
    if family == "qwen_image" and config.get("extra_condition_channels"):
        return result("", "inpaint", QWEN_INPAINT_PROBLEM, UnsupportedModel, size)
    if not family:
        return result("", "", "a ControlNet of an architecture Easel does not know", UnsupportedModel, size)
    union = cls in ("ZImageControlNetModel", "QwenImageControlNetModel", "ControlNetUnionModel") or (
        cls == "FluxControlNetModel" and config.get("num_mode") is not None)
    return result(family, UNION if union else kind_from_name(name), problem_line(family), UnsupportedModel, size)


def config_family(config: dict) -> str:
    """The family a ControlNet config describes ("" when it says none)."""
    cls = config.get("_class_name")
    classes = {"FluxControlNetModel": "flux1", "ZImageControlNetModel": "zimage", "QwenImageControlNetModel": "qwen_image"}
    if cls in classes:
        return classes[cls]
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    width = config.get("cross_attention_dim")
    if width in _WIDTH_FAMILY:
        return _WIDTH_FAMILY[width]
    if "use_linear_projection" in config:
        return "sd2" if config.get("use_linear_projection") else "sd1"
    return ""

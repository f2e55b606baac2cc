"""Control inputs (ControlNets), written once for every family whose capabilities take them.

A family declares the control kinds it takes (``Capabilities.control_kinds``); its runner asks this
module for the rest: ``check`` refuses what the model does not take, ``ControlModels`` resolves each
input's control model (a path, a name in the model library, or the library's choice for the
family and kind), loads it safetensors-only and offline (a diffusers folder, or one file, its config
built from the generator's own denoiser config and the file's tensor shapes: never fetched, never
unpickled), checks that it belongs to the generator's family and fits its denoiser, and keeps it for
the next job; ``pipeline`` builds the ControlNet pipeline from the loaded one (the same modules, no
copy); ``call_args`` adds the control images, scales, step ranges and a Union model's control mode to
a call (``step_range`` gives a step range to a pipeline that has none: Z-Image's); ``record`` is what
the metadata says of them. SD 1.5 / SDXL (``ControlNetModel``; SDXL's Union ``ControlNetUnionModel``,
xinsir's: several inputs at once, each told its mode), FLUX.1 (``FluxControlNetModel``:
canny / depth / Union, several at once), Z-Image (``ZImageControlNetModel``, the Fun Union: one at
a time) and Qwen-Image (``QwenImageControlNetModel``, InstantX's Union: text to image; several inputs
through one Union model). Engine thread, except ``check`` and ``choose`` (any thread).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from engine.api import ControlInput, InvalidRequest, ModelError, ModelInfo, UnsupportedModel
from engine.core.loading import named_model
from engine.core.placement import place, unhook
from engine.files.control import FAMILY_NAMES, KIND, UNION, runnable
from engine.files.probe import inspect_model, read_header

log = logging.getLogger(__name__)

# The ControlNet pipeline of each pipeline a family loads (by diffusers class name).
CONTROL_PIPELINES = {
    "StableDiffusionPipeline": "StableDiffusionControlNetPipeline",
    "StableDiffusionImg2ImgPipeline": "StableDiffusionControlNetImg2ImgPipeline",
    "StableDiffusionInpaintPipeline": "StableDiffusionControlNetInpaintPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLControlNetPipeline",
    "StableDiffusionXLImg2ImgPipeline": "StableDiffusionXLControlNetImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline": "StableDiffusionXLControlNetInpaintPipeline",
    "FluxPipeline": "FluxControlNetPipeline",
    "FluxImg2ImgPipeline": "FluxControlNetImg2ImgPipeline",
    "FluxInpaintPipeline": "FluxControlNetInpaintPipeline",
    "ZImagePipeline": "ZImageControlNetPipeline",
    "ZImageInpaintPipeline": "ZImageControlNetInpaintPipeline",  # Union 2.x only (its inpaint channels)
    # Qwen-Image: text to image only (QwenImageControlNetInpaintPipeline wants InstantX's inpainting
    # ControlNet, its mask as the control; there is no img2img ControlNet pipeline).
    "QwenImagePipeline": "QwenImageControlNetPipeline",
}
# The ControlNet Union pipeline of each SDXL pipeline (a ``ControlNetUnionModel``, told each control's mode).
UNION_PIPELINES = {
    "StableDiffusionXLPipeline": "StableDiffusionXLControlNetUnionPipeline",
    "StableDiffusionXLImg2ImgPipeline": "StableDiffusionXLControlNetUnionImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline": "StableDiffusionXLControlNetUnionInpaintPipeline",
}
# What runs several control models at once, by the control model's class ("" = one at a time).
MULTI = {"ControlNetModel": "MultiControlNetModel", "FluxControlNetModel": "FluxMultiControlNetModel",
         "ControlNetUnionModel": "MultiControlNetUnionModel", "ZImageControlNetModel": "",
         "QwenImageControlNetModel": "QwenImageMultiControlNetModel"}
# The control models whose multi-model runs only one Union model (for several inputs), not several models.
ONE_UNION = ("QwenImageControlNetModel",)
# A FLUX.1 Union model's control modes (InstantX / Shakker-Labs Union: canny 0, tile 1, depth 2, blur 3,
# pose 4, gray 5, low quality 6). Line art and scribbles are edges: the canny mode reads them.
UNION_MODES = {"canny": 0, "tile": 1, "depth": 2, "pose": 4, "lineart": 0, "scribble": 0}
MODE_NAMES = {0: "canny", 1: "tile", 2: "depth", 3: "blur", 4: "pose", 5: "gray", 6: "low quality"}
# An SDXL Union model's (xinsir's controlnet-union-sdxl-1.0 / ProMax: openpose 0, depth 1, hed/pidi/scribble/
# ted 2, canny/lineart/mlsd 3, normal 4, segment 5, tile 6, repaint/inpaint 7; the first six in both).
SDXL_UNION_MODES = {"pose": 0, "depth": 1, "scribble": 2, "canny": 3, "lineart": 3, "tile": 6, "inpaint": 7}
SDXL_MODE_NAMES = {0: "openpose", 1: "depth", 2: "hed/pidi/scribble/ted", 3: "canny/lineart/mlsd", 4: "normal",
                   5: "segment", 6: "tile", 7: "repaint"}
# Each family's Union modes and their names (A1111's ``Union Control Type``)
FAMILY_MODES = {"flux1": (UNION_MODES, MODE_NAMES), "sdxl": (SDXL_UNION_MODES, SDXL_MODE_NAMES)}
# What each family's Union models take: FLUX.1's the kinds it has a mode for; Z-Image's Fun Union was
# trained on canny, HED (soft line art), depth, pose (and MLSD) images and reads the kind from the image.
# Qwen-Image's InstantX Union: canny, soft edge (line art), depth, pose, read from the image too.
UNION_KINDS = {"flux1": tuple(UNION_MODES), "sdxl": tuple(SDXL_UNION_MODES), "zimage": ("canny", "depth", "pose", "lineart"),
               "qwen_image": ("canny", "lineart", "depth", "pose")}
WHERE = "put one in the model folders (A1111 models/ControlNet, ComfyUI models/controlnet) or give its path"
KEEP = 4  # control models kept loaded per generator


def check(caps, controls) -> None:
    """Refuse (InvalidRequest, one line) control inputs the model's capabilities do not take. Any thread."""
    if not controls:
        return
    kinds = getattr(caps, "control_kinds", ())
    if not kinds:
        raise InvalidRequest("controls", f"{caps.label} takes no control inputs (ControlNet)")
    for c in controls:
        if c.kind not in kinds:
            raise InvalidRequest("controls", f"{caps.label} takes no {c.kind} control; it takes {', '.join(kinds)}")


def active(controls) -> tuple:
    """The controls that act: on at least one step (a range of zero width, e.g. end 0, acts on none)
    and with a strength above 0; the job runs as if the others were not there (FLUX.1's pipeline would
    otherwise draw the control image's latents from the seed's generator, shifting the noise). Any thread."""
    return tuple(c for c in controls if c.end > c.start and c.strength > 0)


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family or "an unknown family")


def choose(library, family: str, kind: str):
    """The library's control model for ``family`` and ``kind`` (a ModelEntry), or None. A model whose
    name says that kind wins; a single usable one of the family with no kind in its name is taken too."""
    if library is None:
        return None
    library.ensure_scanned()
    fitting = [e for e in library.of_kind(KIND) if e.usable and e.family == family]
    named = sorted((e for e in fitting if e.info.variant == kind), key=lambda e: e.name.lower())
    if named:
        return named[0]
    unions = sorted((e for e in fitting if e.info.variant == UNION and union_takes(e.family, kind)),
                    key=lambda e: e.name.lower())
    if unions:  # a Union model takes every kind it has a mode for
        return unions[0]
    unnamed = [e for e in fitting if not e.info.variant]
    return unnamed[0] if len(unnamed) == 1 else None


def union_takes(family: str, kind: str) -> bool:
    """Whether a Union control model of ``family`` takes ``kind`` (``UNION_KINDS``)."""
    return kind in UNION_KINDS.get(family, ())


def resolve(control: ControlInput, library, family: str) -> str:
    """The path of ``control``'s model: its path, its name in the library, or the library's choice.
    Raises InvalidRequest (one line) when there is none. Any thread (scans the library once)."""
    want = control.model
    if want:
        path = named_model(want, library, KIND, family)
        if path is not None:
            return path
        raise InvalidRequest("controls", f"no control model called {want} ({WHERE})")
    entry = choose(library, family, control.kind)
    if entry is None:
        raise InvalidRequest("controls", f"no {control.kind} control model for {family_name(family)} in the model "
                             f"library: {WHERE}")
    return entry.path


@dataclass
class LoadedControl:
    path: str
    info: ModelInfo
    model: object  # diffusers ControlNetModel / FluxControlNetModel / ZImageControlNetModel
    hash10: str = ""

    @property
    def union(self) -> bool:
        """A FLUX.1 or SDXL Union model, which is told the control's mode (Z-Image's reads it from the image)."""
        c = self.model.config
        return getattr(c, "num_mode", None) is not None or getattr(c, "num_control_type", None) is not None

    def mode(self, kind: str) -> int:
        """The Union mode of a ``kind`` control (``FAMILY_MODES``)."""
        return FAMILY_MODES[self.info.family][0][kind]

    def mode_name(self, kind: str) -> str:
        modes, names = FAMILY_MODES.get(self.info.family, ({}, {}))
        return names.get(modes.get(kind), "")


class ControlModels:
    """The control models one generator has loaded (the last KEEP), on its device and dtype. Engine thread."""

    def __init__(self, library=None, hasher=None, dtype=None):
        self.library = library
        self.hasher = hasher
        self.dtype = dtype
        self.loaded: OrderedDict[str, LoadedControl] = OrderedDict()

    def get(self, control: ControlInput, base: ModelInfo, denoiser) -> LoadedControl:
        """The loaded control model for ``control`` (loading it the first time), checked against the
        generator ``base`` (its ModelInfo) and its ``denoiser`` (the UNet or transformer). Raises
        InvalidRequest / ModelError (one line)."""
        path = resolve(control, self.library, base.family)
        hit = self.loaded.get(path)
        if hit is None:
            info = inspect_model(path)
            if info.kind != KIND:
                raise InvalidRequest("controls", f"{info.name} is not a control model ({info.problem or info.kind})")
            if info.problem and not info.family:
                raise UnsupportedModel(info.name, info.problem)
            if info.family != base.family:
                raise InvalidRequest("controls", f"{info.name} is a control model for {family_name(info.family)}, but "
                                     f"{base.name} is {family_name(base.family)}: choose a {family_name(base.family)} "
                                     "control model")
            if not runnable(info.family, info.variant):
                raise UnsupportedModel(info.name, f"{family_name(info.family)} ControlNet Union models are not "
                                       "supported yet")
            model = load_controlnet(info, denoiser, self.dtype)
            fits = _fits(model, denoiser)
            if fits:
                raise InvalidRequest("controls", f"{info.name} does not fit {base.name} ({fits}): choose a control "
                                     "model made for it")
            hit = LoadedControl(path, info, model, (self.hasher(path) if self.hasher else "")[:10])
            self.loaded[path] = hit
            while len(self.loaded) > KEEP:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(path)
        if hit.info.variant == UNION and not union_takes(hit.info.family, control.kind):
            raise InvalidRequest("controls", f"{hit.info.name} (a Union control model) has no {control.kind} mode; "
                                 f"it takes {', '.join(UNION_KINDS.get(hit.info.family, ()))}")
        modes = getattr(hit.model.config, "num_control_type", None)
        if modes is not None and hit.mode(control.kind) >= modes:
            raise InvalidRequest("controls", f"{hit.info.name} has {modes} control modes, none for {control.kind} (its "
                                 "ProMax version has it)")
        return hit

    def clear(self) -> None:
        self.loaded.clear()


def _fits(model, denoiser) -> str:
    """Why the control model cannot steer ``denoiser`` ("" when it can): for SD the cross-attention width
    and SDXL's extra embeddings; for FLUX.1 and Z-Image the width of the blocks it adds to."""
    c, u = model.config, denoiser.config
    name = type(model).__name__
    if name == "FluxControlNetModel":
        mine, theirs = c.num_attention_heads * c.attention_head_dim, u.num_attention_heads * u.attention_head_dim
        if mine != theirs or c.joint_attention_dim != u.joint_attention_dim:
            return f"it is {mine} wide for a {c.joint_attention_dim}-wide text encoder, the model {theirs} for {u.joint_attention_dim}"
        return ""
    if name == "QwenImageControlNetModel":
        mine, theirs = c.num_attention_heads * c.attention_head_dim, u.num_attention_heads * u.attention_head_dim
        if mine != theirs or c.joint_attention_dim != u.joint_attention_dim:
            return f"it is {mine} wide for a {c.joint_attention_dim}-wide text encoder, the model {theirs} for {u.joint_attention_dim}"
        return ""
    if name == "ZImageControlNetModel":
        if c.dim != u.dim:
            return f"it is {c.dim} wide, the model {u.dim}"
        if max(c.control_layers_places) >= u.n_layers:
            return f"it steers layer {max(c.control_layers_places)}, the model has {u.n_layers}"
        return ""
    if c.cross_attention_dim != u.cross_attention_dim:
        return f"its cross-attention width is {c.cross_attention_dim}, the model's {u.cross_attention_dim}"
    if (c.addition_embed_type or None) != (u.addition_embed_type or None):
        return "one of them has SDXL's size embeddings and the other not"
    if list(c.block_out_channels) != list(u.block_out_channels):
        return f"its blocks are {list(c.block_out_channels)} channels wide, the model's {list(u.block_out_channels)}"
    return ""


# ------------------------------------------------------------------------------------ loading


CLASSES = {"flux1": "FluxControlNetModel", "zimage": "ZImageControlNetModel", "qwen_image": "QwenImageControlNetModel"}  # other families: ControlNetModel


def load_controlnet(info: ModelInfo, denoiser, dtype):
    """The control model of ``info`` (a diffusers folder or one .safetensors file), on the CPU in
    ``dtype``. A single file's config comes from the generator's ``denoiser`` config and the file's own
    tensor shapes, so nothing is fetched. Engine thread; raises ModelError (one line)."""
    import diffusers

    union = info.family == "sdxl" and info.variant == UNION
    cls = getattr(diffusers, "ControlNetUnionModel" if union else CLASSES.get(info.family, "ControlNetModel"))
    try:
        if info.format == "diffusers":
            names = [p.name for p in Path(info.path).glob("*.safetensors")]
            variant = "fp16" if names and all(".fp16." in n for n in names) else None  # a variant="fp16" download
            model = cls.from_pretrained(info.path, local_files_only=True, use_safetensors=True, dtype=dtype,
                                        variant=variant)
        elif info.family == "flux1":
            model = _load_flux_single_file(info, denoiser, dtype)
        elif info.family == "zimage":
            model = _load_zimage_single_file(info, denoiser, dtype)
        elif info.family == "qwen_image":
            model = _load_qwen_image_single_file(info, denoiser, dtype)
        else:
            model = _load_single_file(info, denoiser, dtype, cls)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AssertionError) as exc:
        log.info("loading control model %s failed", info.path, exc_info=True)
        raise ModelError(info.name, f"this control model cannot be loaded ({_short(exc)})") from exc
    if union:
        model.register_forward_hook(_silent_off_range, with_kwargs=True)
    return model.eval()


def _silent_off_range(module, args, kwargs, output):
    """An SDXL Union model given several inputs scales each input, not its output: on a step outside
    every input's range (all scales 0) it would still steer with the bare latent. There it gives
    nothing, as one input outside its range does (diffusers scales that one's output by 0)."""
    scales = kwargs.get("conditioning_scale")
    if not isinstance(scales, (list, tuple)) or len(scales) < 2 or any(float(s) != 0.0 for s in scales):
        return output
    down, mid = output[0], output[1]
    return ([d * 0.0 for d in down], mid * 0.0, *output[2:]) if isinstance(output, tuple) else output


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] + ("…" if len(text) > 160 else "")


def single_file_config(unet_config, shapes: dict[str, tuple[int, ...]], cls=None) -> dict:
    """A ControlNetModel (``cls``: or ControlNetUnionModel) config for one file: the generator's UNet
    config (as ``from_unet`` takes it), with what the file's shapes say (either layout) in place of it."""
    from diffusers import ControlNetModel

    params = set(inspect.signature((cls or ControlNetModel).__init__).parameters) - {"self"}
    config = {k: v for k, v in dict(unet_config).items() if k in params}
    if "task_embedding" in shapes:  # an SDXL Union model: its modes and control transformer (8 heads, as xinsir's)
        config["num_control_type"], config["num_trans_channel"] = shapes["task_embedding"]
        config["num_trans_layer"] = _count(shapes, "transformer_layes.")
        config["num_proj_channel"] = shapes["spatial_ch_projs.weight"][0]
    ldm = any(k.startswith("control_model.") for k in shapes)
    s = {k.removeprefix("control_model."): v for k, v in shapes.items()}
    if ldm or "input_hint_block.0.weight" in s:
        config["in_channels"] = s["input_blocks.0.0.weight"][1]
        hint = sorted(int(k.split(".")[1]) for k in s if k.startswith("input_hint_block.") and k.endswith(".weight"))
        config["conditioning_channels"] = s["input_hint_block.0.weight"][1]
        # input_hint_block: conv_in (0), then pairs of convs, the second of each pair widening; conv_out last
        widths = [s[f"input_hint_block.{i}.weight"][0] for i in hint[:-1]]
        config["conditioning_embedding_out_channels"] = [widths[0]] + widths[2::2]
        return config
    config["in_channels"] = s["conv_in.weight"][1]
    config["conditioning_channels"] = s["controlnet_cond_embedding.conv_in.weight"][1]
    blocks = sorted({int(k.split(".")[2]) for k in s if k.startswith("controlnet_cond_embedding.blocks.")})
    config["conditioning_embedding_out_channels"] = (
        [s["controlnet_cond_embedding.conv_in.weight"][0]]
        + [s[f"controlnet_cond_embedding.blocks.{i}.weight"][0] for i in blocks if i % 2 == 1])
    levels = sorted({int(k.split(".")[1]) for k in s if k.startswith("down_blocks.")})
    config["block_out_channels"] = [s[f"down_blocks.{lv}.resnets.0.conv2.weight"][0] for lv in levels]
    config["layers_per_block"] = len({k.split(".")[3] for k in s if k.startswith("down_blocks.0.resnets.")})
    depths, types = [], []
    for lv in levels:
        blocks_here = {k.split(".")[5] for k in s if k.startswith(f"down_blocks.{lv}.attentions.0.transformer_blocks.")}
        depths.append(len(blocks_here))
        types.append("CrossAttnDownBlock2D" if blocks_here else "DownBlock2D")
    config["down_block_types"] = types
    config["transformer_layers_per_block"] = [d or 1 for d in depths]
    mid = {k.split(".")[4] for k in s if k.startswith("mid_block.attentions.0.transformer_blocks.")}
    if mid:
        config["mid_block_type"] = "UNetMidBlock2DCrossAttn"
    key = next((k for k in s if k.endswith("attn2.to_k.weight")), None)
    if key is not None:
        config["cross_attention_dim"] = s[key][1]
    heads = config.get("attention_head_dim")
    if isinstance(heads, (list, tuple)) and len(heads) != len(levels):
        config["attention_head_dim"] = list(heads)[: len(levels)]
    return config


def _load_single_file(info: ModelInfo, unet, dtype, cls=None):
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
    from safetensors.torch import load_file

    cls = cls or ControlNetModel
    header = read_header(info.path)
    config = single_file_config(unet.config, header.shapes(), cls)
    state = load_file(info.path)
    if any(k.startswith("control_model.") or k.startswith("input_hint_block.") for k in state):
        state = convert_controlnet_checkpoint(state, config)  # A1111's layout -> diffusers' names
        if config.get("addition_embed_type") == "text_time":  # diffusers reads SDXL's label_emb as a class embedding
            state = {("add_embedding." + k[len("class_embedding."):] if k.startswith("class_embedding.") else k): v
                     for k, v in state.items()}
    return _assign(cls, config, state, info, dtype)


def _count(shapes: dict, prefix: str) -> int:
    """How many numbered blocks ``prefix.N.`` the names hold."""
    return len({k[len(prefix):].split(".")[0] for k in shapes if k.startswith(prefix)})


def flux_single_file_config(transformer_config, shapes: dict[str, tuple[int, ...]]) -> dict:
    """A FluxControlNetModel config for one file in diffusers' names: its depth, widths, guidance, Union
    modes and XLabs-style hint block from the shapes; the RoPE axes from the generator's transformer."""
    inner = shapes["controlnet_x_embedder.weight"][0]
    norm = shapes.get("transformer_blocks.0.attn.norm_q.weight")
    head = norm[0] if norm else transformer_config["attention_head_dim"]
    config = {
        "patch_size": 1, "in_channels": shapes["x_embedder.weight"][1],
        "num_layers": _count(shapes, "transformer_blocks."),
        "num_single_layers": _count(shapes, "single_transformer_blocks."),
        "attention_head_dim": head, "num_attention_heads": inner // head,
        "joint_attention_dim": shapes["context_embedder.weight"][1],
        "pooled_projection_dim": shapes["time_text_embed.text_embedder.linear_1.weight"][1],
        "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in shapes,
        "axes_dims_rope": list(transformer_config["axes_dims_rope"]),
    }
    if "controlnet_mode_embedder.weight" in shapes:
        config["num_mode"] = shapes["controlnet_mode_embedder.weight"][0]
    if "input_hint_block.conv_out.weight" in shapes:
        config["conditioning_embedding_channels"] = shapes["input_hint_block.conv_out.weight"][0]
    return config


def _assign(cls, config: dict, state: dict, info: ModelInfo, dtype):
    import torch

    with torch.device("meta"):
        model = cls.from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        some = (missing or unexpected)[:2]
        raise ModelError(info.name, f"its weights do not match the architecture it claims ({', '.join(some)} …)")
    return model.to(dtype=dtype)


def _load_flux_single_file(info: ModelInfo, transformer, dtype):
    from diffusers import FluxControlNetModel
    from safetensors.torch import load_file

    config = flux_single_file_config(dict(transformer.config), read_header(info.path).shapes())
    return _assign(FluxControlNetModel, config, load_file(info.path), info, dtype)


def zimage_single_file_config(transformer_config, shapes: dict[str, tuple[int, ...]], refiner_trained: bool) -> dict:
    """A ZImageControlNetModel config for one Fun ControlNet file (1.0, 2.0 or 2.1), as diffusers reads
    them: the control layers spread evenly over the generator's layers (1.0: 6 of 30, every 5th; 2.x: 15,
    every 2nd), the input width from the patch embedder (1.0: the latent's 16 channels; 2.x: 33, with the
    inpaint mask and image), the noise-refiner control of 2.1 (``refiner_trained``: its before_proj is not
    all zero; 2.0 ships an untrained one, which diffusers leaves out)."""
    t = transformer_config
    patches = sorted({k.split(".")[1] for k in shapes if k.startswith("control_all_x_embedder.")})
    sizes = [tuple(int(v) for v in p.split("-")) for p in patches]
    first = shapes[f"control_all_x_embedder.{patches[0]}.weight"]
    patch, frames = sizes[0]
    in_dim = first[1] // (patch * patch * frames)
    layers = _count(shapes, "control_layers.")
    every = max(1, t["n_layers"] // layers)
    refiners = _count(shapes, "control_noise_refiner.")
    has_proj = "control_noise_refiner.0.before_proj.weight" in shapes
    if in_dim == t["in_channels"] and not has_proj:
        mode = None  # 1.0: a plain refiner over the control image
    else:
        mode = "control_noise_refiner" if has_proj and refiner_trained else "control_layers"
    return {
        "control_layers_places": [i * every for i in range(layers)],
        "control_refiner_layers_places": list(range(t["n_refiner_layers"])),
        "control_in_dim": in_dim, "add_control_noise_refiner": mode,
        "all_patch_size": tuple(s[0] for s in sizes), "all_f_patch_size": tuple(s[1] for s in sizes),
        "dim": first[0], "n_refiner_layers": refiners or t["n_refiner_layers"], "n_heads": t["n_heads"],
        "n_kv_heads": t["n_kv_heads"], "norm_eps": t["norm_eps"], "qk_norm": t["qk_norm"],
    }


def _load_zimage_single_file(info: ModelInfo, transformer, dtype):
    from diffusers import ZImageControlNetModel
    from safetensors.torch import load_file

    state = load_file(info.path)
    proj = state.get("control_noise_refiner.0.before_proj.weight")
    config = zimage_single_file_config(dict(transformer.config), read_header(info.path).shapes(),
                                       proj is not None and bool(proj.abs().sum() > 0))
    if config["add_control_noise_refiner"] == "control_layers":  # 2.0's untrained refiner: left out, as diffusers does
        state = {k: v for k, v in state.items() if not k.startswith("control_noise_refiner.")}
    return _assign(ZImageControlNetModel, config, state, info, dtype)


def qwen_image_single_file_config(transformer_config, shapes: dict[str, tuple[int, ...]]) -> dict:
    """A QwenImageControlNetModel config for one file in diffusers' names (InstantX's layout): its depth,
    widths and head size from the shapes; the RoPE axes from the generator's transformer."""
    inner, in_channels = shapes["img_in.weight"]
    norm = shapes.get("transformer_blocks.0.attn.norm_q.weight")
    head = norm[0] if norm else transformer_config["attention_head_dim"]
    return {
        "patch_size": transformer_config.get("patch_size", 2), "in_channels": in_channels,
        "out_channels": transformer_config.get("out_channels", 16),
        "num_layers": _count(shapes, "transformer_blocks."), "attention_head_dim": head,
        "num_attention_heads": inner // head, "joint_attention_dim": shapes["txt_in.weight"][1],
        "axes_dims_rope": list(transformer_config["axes_dims_rope"]),
        "extra_condition_channels": shapes["controlnet_x_embedder.weight"][1] - in_channels,
    }


def _load_qwen_image_single_file(info: ModelInfo, transformer, dtype):
    from diffusers import QwenImageControlNetModel
    from safetensors.torch import load_file

    config = qwen_image_single_file_config(dict(transformer.config), read_header(info.path).shapes())
    model = _assign(QwenImageControlNetModel, config, load_file(info.path), info, dtype)
    # its RoPE tables are plain attributes, not weights: built anew off the meta device, as from_config makes them
    rope = model.pos_embed
    model.pos_embed = type(rope)(theta=rope.theta, axes_dim=list(rope.axes_dim), scale_rope=rope.scale_rope)
    return model


# ------------------------------------------------------------------------------------ running


def pipeline(pipe, controlnets: list, build=None, label: str = ""):
    """The ControlNet pipeline matching ``pipe`` (txt2img / img2img / inpaint), sharing its modules.
    ``controlnets``: one model per control input (the same one may come several times); ``build(cls,
    controlnet)`` makes the pipeline (default ``cls.from_pipe``; a runner whose modules must keep their
    own dtypes, e.g. a GGUF transformer, passes its own). ``label``: the model's, for the refusals."""
    import diffusers

    kind = type(controlnets[0]).__name__
    if kind == "ControlNetUnionModel" and any(type(n).__name__ != kind for n in controlnets):
        raise InvalidRequest("controls", "a ControlNet Union model cannot run beside other ControlNets: use one kind")
    table = UNION_PIPELINES if kind == "ControlNetUnionModel" else CONTROL_PIPELINES
    name = table.get(type(pipe).__name__)
    if name is None:
        img2img = type(pipe).__name__.replace("Inpaint", "Img2Img")
        raise InvalidRequest("controls", f"{label or type(pipe).__name__} takes no control inputs in this mode: "
                             "use text to image" + (" or image to image" if img2img in table else ""))
    if len(controlnets) == 1:
        net = controlnets[0]
    elif not MULTI.get(kind):
        raise InvalidRequest("controls", f"{label or 'this model'} takes one control input at a time "
                             f"(got {len(controlnets)})")
    else:
        unique = list({id(n): n for n in controlnets}.values())
        multi = getattr(diffusers, MULTI[kind], None) or getattr(diffusers.models.controlnets, MULTI[kind])
        # one FLUX.1 Union model for several inputs: loaded once, run once per input (diffusers' own way)
        one_union = kind == "FluxControlNetModel" and len(unique) == 1 and unique[0].config.num_mode is not None
        if kind in ONE_UNION:  # Qwen-Image's multi-model runs one Union model for several inputs, not several
            if len(unique) > 1:
                raise InvalidRequest("controls", f"{label or 'this model'} takes several control inputs only through "
                                     f"one Union control model (got {len(unique)} control models)")
            one_union = True
        # one SDXL Union model takes several inputs itself (a list of images and of modes: xinsir's multi-condition)
        net = unique[0] if kind == "ControlNetUnionModel" and len(unique) == 1 else multi(unique if one_union else controlnets)
    cls = getattr(diffusers, name)
    try:
        out = build(cls, net) if build is not None else cls.from_pipe(pipe, controlnet=net)
    except ValueError as exc:  # Z-Image's inpaint pipeline refuses the Union 1.0 model
        raise InvalidRequest("controls", f"this control model cannot inpaint ({_short(exc)})") from exc
    seq = getattr(out, "model_cpu_offload_seq", "") or ""
    if "transformer" in seq and "controlnet" not in seq.split("->"):
        # Model offload moves the control model onto the GPU just before the transformer (Z-Image's shares
        # the transformer's embedders and refiners: the transformer's hook brings them back right after).
        out.model_cpu_offload_seq = seq.replace("transformer", "controlnet->transformer", 1)
    out.set_progress_bar_config(disable=True)
    return out



def switch(runner, name, plain, nets: list, build=None, label: str = ""):
    """Make ``plain`` (the runner's pipeline for a mode, cached under ``name``) or its ControlNet pipeline
    for the loaded controls ``nets`` the runner's active one, and return it: the ControlNet pipeline is
    built once per (name, control models) in ``runner.pipes`` (those whose control model is no longer
    kept are dropped), and placed on the device by the runner's preset. Engine thread."""
    pipe, fresh = plain, False
    if nets:
        key = (name, tuple(n.path for n in nets))
        pipe = runner.pipes.get(key)
        if pipe is None:
            kept = set(runner.controls.loaded)
            for old in [k for k in runner.pipes if isinstance(k, tuple) and not set(k[1]) <= kept]:
                del runner.pipes[old]  # its control model is no longer kept
            pipe = runner.pipes[key] = pipeline(plain, [n.model for n in nets], build=build, label=label)
            fresh = True
    settings = runner.placement.settings
    offload = settings.model_offload or settings.sequential_offload
    if pipe is not runner.active and offload:
        unhook(runner.active)
        place(pipe, settings)
    elif fresh:
        place(pipe, settings)  # the new control model onto the device, with the preset's switches
    elif nets and not offload:
        for n in nets:  # back from RAM after a park, else a no-op
            n.model.to(settings.device)
    runner.active = pipe
    return pipe

def takes(pipe, argument: str) -> bool:
    """Whether ``pipe``'s call takes ``argument`` (Z-Image's control inpaint takes no ``strength``)."""
    return argument in inspect.signature(type(pipe).__call__).parameters


def denoisers(pipe, name: str = "") -> list:
    """The modules of ``pipe`` that run once per step (cancel hooks go on them): its denoiser (``name``,
    else its UNet or transformer), and its control model when it has one."""
    out = [getattr(pipe, n) for n in ((name,) if name else ("unet", "transformer")) if getattr(pipe, n, None) is not None]
    net = getattr(pipe, "controlnet", None)
    return out + ([net] if net is not None else [])


def control_image(control: ControlInput, size: tuple[int, int], box=None):
    """``control.image`` at the working size: the part under ``box`` (the "only masked" crop, in the
    full image's pixels) when given. An inpaint control's transparent pixels become -1 (the masked
    region, as the inpaint ControlNet was trained), so it is handed over as a tensor."""
    from PIL import Image

    image = control.image
    if box is not None:
        full = image.size
        # the control image may differ in size from the source: crop the same fraction of it
        sx, sy = full[0] / box[4], full[1] / box[5]
        image = image.crop((round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)))
    if control.kind == "inpaint" and image.mode == "RGBA":
        import numpy as np
        import torch

        im = image.resize(size, Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.float32) / 255.0
        rgb = a[..., :3].copy()
        rgb[a[..., 3] < 0.5] = -1.0
        return torch.from_numpy(rgb).permute(2, 0, 1)[None]
    image = image.convert("RGB")
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def call_args(args: dict, controls, size: tuple[int, int], plan=None, pipe=None, loaded=None) -> dict:
    """``args`` of a pipeline call with the control images, scales and step ranges added. ``size``:
    the working size; ``plan``: an inpaint plan whose box the control images are cropped to; ``pipe``:
    the ControlNet pipeline (the names its call takes); ``loaded``: each control's LoadedControl (a
    FLUX.1 Union model is told each control's mode)."""
    box = None
    source = getattr(plan, "source", None)
    if source is not None and getattr(plan, "box", None) and tuple(plan.box) != (0, 0, *source.size):
        box = (*plan.box, *source.size)
    images = [control_image(c, size, box) for c in controls]
    one = len(controls) == 1
    names = set(inspect.signature(type(pipe).__call__).parameters) if pipe is not None else None
    out = dict(args)
    key = "control_image" if (names is not None and "control_image" in names) or "image" in args else "image"
    out[key] = images[0] if one else images
    out["controlnet_conditioning_scale"] = float(controls[0].strength) if one else [float(c.strength) for c in controls]
    if names is None or "control_guidance_start" in names:  # else: ``step_range`` gives the pipeline one
        out["control_guidance_start"] = float(controls[0].start) if one else [float(c.start) for c in controls]
        out["control_guidance_end"] = float(controls[0].end) if one else [float(c.end) for c in controls]
    if loaded and any(n.union for n in loaded):
        modes = [n.mode(c.kind) if n.union else None for c, n in zip(controls, loaded)]
        out["control_mode"] = modes[0] if one else modes
    out.setdefault("width", size[0])
    out.setdefault("height", size[1])
    return out


@contextlib.contextmanager
def step_range(pipe, controls):
    """Give a ControlNet pipeline without ``control_guidance_start/end`` (Z-Image's) the control's step
    range: its control model's scale is 0 on the steps outside it (diffusers' own rule for which steps
    those are), so those steps run as without the control. A no-op for a pipeline that takes the range."""
    if len(controls) != 1 or takes(pipe, "control_guidance_start"):
        yield
        return
    c, net, calls = controls[0], pipe.controlnet, [0]

    def scale(module, args, kwargs):
        n = max(1, int(getattr(pipe, "_num_timesteps", 0) or 1))
        i, calls[0] = calls[0], calls[0] + 1
        if i / n < c.start or (i + 1) / n > c.end:
            kwargs = {**kwargs, "conditioning_scale": 0.0}
        return args, kwargs

    handle = None if (c.start == 0 and c.end == 1) else net.register_forward_pre_hook(scale, with_kwargs=True)
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def record(request, loaded: list, params: list, notice):
    """The request with each control's model path and hash as run; A1111's ``ControlNet N`` pairs (and a
    Union model's ``Control mode``) appended to ``params``; ``notice(text)`` when a model is not the one
    the request's hash asked for (regenerating with another file)."""
    for i, (c, n) in enumerate(zip(request.controls, loaded)):
        params.append((f"ControlNet {i}", a1111_line(c, n)))
        if c.model_hash and n.hash10 and c.model_hash != n.hash10:
            notice(f"control model {n.info.name} is not the one asked for (hash {n.hash10}, not "
                   f"{c.model_hash}): the image will differ")
    return request.replace(controls=tuple(dataclasses.replace(c, model=n.path, model_hash=n.hash10)
                                          for c, n in zip(request.controls, loaded)))


def a1111_line(control: ControlInput, loaded: LoadedControl) -> str:
    """A1111's ``ControlNet N`` value: Module, Model name [hash], Weight, Guidance Start/End."""
    model = f"{loaded.info.name} [{loaded.hash10}]" if loaded.hash10 else loaded.info.name
    name = loaded.mode_name(control.kind) if loaded.union else ""
    mode = f", Union Control Type: {name}" if name else ""
    return (f"Module: {control.preprocessor or 'none'}, Model: {model}, Weight: {_num(control.strength)}, "
            f"Guidance Start: {_num(control.start)}, Guidance End: {_num(control.end)}{mode}")


def _num(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text

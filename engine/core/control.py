"""Control inputs (ControlNets), written once for every family whose capabilities take them.

A family declares the control kinds it takes (``Capabilities.control_kinds``); its runner asks this
module for the rest: ``check`` refuses what the model does not take, ``ControlModels`` resolves each
input's control model (a path, a name in the model library, or the library's choice for the
family and kind), loads it safetensors-only and offline (a diffusers folder, or one file in either
layout, its config built from the generator's own UNet config and the file's tensor shapes: never
fetched, never unpickled), checks that it belongs to the generator's family, and keeps it for the
next job; ``pipeline`` builds the ControlNet pipeline from the loaded one (``from_pipe``: the same
modules, no copy); ``call_args`` adds the control images, scales and step ranges to a call.
Engine thread, except ``check`` and ``choose`` (any thread).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from engine.api import ControlInput, InvalidRequest, ModelError, ModelInfo, UnsupportedModel
from engine.files.control import FAMILY_NAMES, KIND
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
}
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
    """The controls that act on at least one step (a range of zero width, e.g. end 0, acts on none:
    the job runs as if it were not there). Any thread."""
    return tuple(c for c in controls if c.end > c.start)


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
    unnamed = [e for e in fitting if not e.info.variant]
    return unnamed[0] if len(unnamed) == 1 else None


def resolve(control: ControlInput, library, family: str) -> str:
    """The path of ``control``'s model: its path, its name in the library, or the library's choice.
    Raises InvalidRequest (one line) when there is none. Any thread (scans the library once)."""
    want = control.model
    if want:
        path = Path(want).expanduser()
        if path.exists():
            return os.path.realpath(path)
        if library is not None:
            library.ensure_scanned()
            entry = library.find(KIND, Path(want).stem if want.endswith(".safetensors") else want, family)
            if entry is not None:
                return entry.path
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
    model: object  # diffusers ControlNetModel
    hash10: str = ""


class ControlModels:
    """The control models one generator has loaded (the last KEEP), on its device and dtype. Engine thread."""

    def __init__(self, library=None, hasher=None, dtype=None):
        self.library = library
        self.hasher = hasher
        self.dtype = dtype
        self.loaded: OrderedDict[str, LoadedControl] = OrderedDict()

    def get(self, control: ControlInput, base: ModelInfo, unet) -> LoadedControl:
        """The loaded control model for ``control`` (loading it the first time), checked against the
        generator ``base`` (its ModelInfo) and its ``unet``. Raises InvalidRequest / ModelError (one line)."""
        path = resolve(control, self.library, base.family)
        hit = self.loaded.get(path)
        if hit is not None:
            self.loaded.move_to_end(path)
            return hit
        info = inspect_model(path)
        if info.kind != KIND:
            raise InvalidRequest("controls", f"{info.name} is not a control model ({info.problem or info.kind})")
        if info.variant == "union" or (info.problem and not info.family):
            raise UnsupportedModel(info.name, info.problem or "this control model cannot be used")
        if info.family != base.family:
            raise InvalidRequest("controls", f"{info.name} is a control model for {family_name(info.family)}, but "
                                 f"{base.name} is {family_name(base.family)}: choose a {family_name(base.family)} "
                                 "control model")
        model = load_controlnet(info, unet, self.dtype)
        fits = _fits(model, unet)
        if fits:
            raise InvalidRequest("controls", f"{info.name} does not fit {base.name} ({fits}): choose a control model "
                                 f"made for it")
        loaded = LoadedControl(path, info, model, (self.hasher(path) if self.hasher else "")[:10])
        self.loaded[path] = loaded
        while len(self.loaded) > KEEP:
            self.loaded.popitem(last=False)
        return loaded

    def clear(self) -> None:
        self.loaded.clear()


def _fits(model, unet) -> str:
    """Why the ControlNet cannot steer ``unet`` ("" when it can): cross-attention width, SDXL's extra embeddings."""
    c, u = model.config, unet.config
    if c.cross_attention_dim != u.cross_attention_dim:
        return f"its cross-attention width is {c.cross_attention_dim}, the model's {u.cross_attention_dim}"
    if (c.addition_embed_type or None) != (u.addition_embed_type or None):
        return "one of them has SDXL's size embeddings and the other not"
    if list(c.block_out_channels) != list(u.block_out_channels):
        return f"its blocks are {list(c.block_out_channels)} channels wide, the model's {list(u.block_out_channels)}"
    return ""


# ------------------------------------------------------------------------------------ loading


def load_controlnet(info: ModelInfo, unet, dtype):
    """A ControlNetModel from ``info`` (a diffusers folder or one .safetensors file), on the CPU in
    ``dtype``. A single file's config comes from the generator's ``unet`` config and the file's own
    tensor shapes, so nothing is fetched. Engine thread; raises ModelError (one line)."""
    from diffusers import ControlNetModel

    try:
        if info.format == "diffusers":
            names = [p.name for p in Path(info.path).glob("*.safetensors")]
            variant = "fp16" if names and all(".fp16." in n for n in names) else None  # a variant="fp16" download
            model = ControlNetModel.from_pretrained(info.path, local_files_only=True, use_safetensors=True,
                                                    dtype=dtype, variant=variant)
        else:
            model = _load_single_file(info, unet, dtype)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        log.info("loading control model %s failed", info.path, exc_info=True)
        raise ModelError(info.name, f"this control model cannot be loaded ({_short(exc)})") from exc
    return model.eval()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] + ("…" if len(text) > 160 else "")


def single_file_config(unet_config, shapes: dict[str, tuple[int, ...]]) -> dict:
    """A ControlNetModel config for one file: the generator's UNet config (as ``from_unet`` takes it),
    with what the file's shapes say (either layout) in place of it."""
    from diffusers import ControlNetModel
    import inspect

    params = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    config = {k: v for k, v in dict(unet_config).items() if k in params}
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


def _load_single_file(info: ModelInfo, unet, dtype):
    import torch
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
    from safetensors.torch import load_file

    header = read_header(info.path)
    config = single_file_config(unet.config, header.shapes())
    state = load_file(info.path)
    if any(k.startswith("control_model.") or k.startswith("input_hint_block.") for k in state):
        state = convert_controlnet_checkpoint(state, config)  # A1111's layout -> diffusers' names
        if config.get("addition_embed_type") == "text_time":  # diffusers reads SDXL's label_emb as a class embedding
            state = {("add_embedding." + k[len("class_embedding."):] if k.startswith("class_embedding.") else k): v
                     for k, v in state.items()}
    with torch.device("meta"):
        model = ControlNetModel.from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        some = (missing or unexpected)[:2]
        raise ModelError(info.name, f"its weights do not match the architecture it claims ({', '.join(some)} …)")
    return model.to(dtype=dtype)


# ------------------------------------------------------------------------------------ running


def pipeline(pipe, controlnets: list):
    """The ControlNet pipeline matching ``pipe`` (txt2img / img2img / inpaint), sharing its modules."""
    import diffusers

    name = CONTROL_PIPELINES.get(type(pipe).__name__)
    if name is None:
        raise InvalidRequest("controls", f"{type(pipe).__name__} has no ControlNet pipeline")
    cls = getattr(diffusers, name)
    net = controlnets[0] if len(controlnets) == 1 else diffusers.models.controlnets.MultiControlNetModel(controlnets)
    out = cls.from_pipe(pipe, controlnet=net)
    out.set_progress_bar_config(disable=True)
    return out


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


def call_args(args: dict, controls, size: tuple[int, int], plan=None) -> dict:
    """``args`` of a pipeline call with the control images, scales and step ranges added. ``size``:
    the working size; ``plan``: an inpaint plan whose box the control images are cropped to."""
    box = None
    source = getattr(plan, "source", None)
    if source is not None and getattr(plan, "box", None) and tuple(plan.box) != (0, 0, *source.size):
        box = (*plan.box, *source.size)
    images = [control_image(c, size, box) for c in controls]
    one = len(controls) == 1
    out = dict(args)
    key = "control_image" if "image" in args else "image"
    out[key] = images[0] if one else images
    out["controlnet_conditioning_scale"] = float(controls[0].strength) if one else [float(c.strength) for c in controls]
    out["control_guidance_start"] = float(controls[0].start) if one else [float(c.start) for c in controls]
    out["control_guidance_end"] = float(controls[0].end) if one else [float(c.end) for c in controls]
    out.setdefault("width", size[0])
    out.setdefault("height", size[1])
    return out


def a1111_line(control: ControlInput, loaded: LoadedControl) -> str:
    """A1111's ``ControlNet N`` value: Module, Model name [hash], Weight, Guidance Start/End."""
    model = f"{loaded.info.name} [{loaded.hash10}]" if loaded.hash10 else loaded.info.name
    return (f"Module: {control.preprocessor or 'none'}, Model: {model}, Weight: {_num(control.strength)}, "
            f"Guidance Start: {_num(control.start)}, Guidance End: {_num(control.end)}")


def _num(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text

"""What a safetensors header describes: kind, family and prediction type, from tensor names alone.

A single-file checkpoint is told from LoRAs, embeddings, VAEs, upscalers, SD3, Flux and ControlNet
files by the names of its tensors, and SD 1.x / 2.x / SDXL apart by its text encoder's names and the
UNet's input channels: all of which hold at any size. Stdlib and ``engine.api`` only. Any thread;
only ``prediction_type`` touches the disk (an A1111 ``.yaml`` sidecar, when there is one).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.api import ModelError, UnsupportedModel
from engine.files.control import file_verdict as control_file_verdict
from engine.files.control import is_control_header
from engine.files.headers import SafetensorsHeader
from engine.files import reference as _reference
from engine.files import tiny as _tiny
from engine.files.safe import open_regular
from engine.files.split import identify

UPSCALER_PROBLEM = "this is an upscaler (ESRGAN-style), not a checkpoint: use it with Upscale"
UNKNOWN_PROBLEM = "could not recognise this file as a Stable Diffusion 1.x, 2.x or SDXL checkpoint"
_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
_LORA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_transformer_")
# kohya, PEFT / diffusers, old diffusers (``to_q_lora.down``), XLabs FLUX (``qkv_lora1.down``)
_LORA_PARTS = (".lora_down.weight", ".lora_A.weight", ".lora_up.", "lora.down.weight", "_lora1.down.weight",
               "_lora2.down.weight")
_V_PARAM = re.compile(r"""^\s*parameterization\s*:\s*["']?v["']?\s*(#.*)?$""", re.MULTILINE)


@dataclass(frozen=True)
class _Verdict:
    kind: str
    family: str = ""
    problem: str | None = None
    error: type[ModelError] | None = None
    variant: str = ""


def _unsupported(what: str, family: str = "") -> _Verdict:
    return _Verdict("unknown", family, f"{what} are not supported yet", UnsupportedModel)


def classify(header: SafetensorsHeader, name: str) -> _Verdict:
    tensors = header.tensors
    names = list(tensors)

    def has(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in names)

    # 1. Add-ons and other architectures, told by names that full SD checkpoints never carry.
    if has(*_LORA_PREFIXES) or any(part in k for k in names for part in _LORA_PARTS):
        return _Verdict("lora", _lora_family(header), f"this is a LoRA, not a checkpoint: use it in a prompt as <lora:{name}:0.8>",
                        UnsupportedModel)
    if is_control_header(header):  # a control model: family from its structure, kind from its name (FLUX.1's and
        # Z-Image's before their transformers: they share some of those names)
        family, variant, problem, error = control_file_verdict(header, name)
        return _Verdict("controlnet", family, problem, error, variant)
    if has("model.diffusion_model.joint_blocks.", "joint_blocks."):  # SD 3 / 3.5 (MMDiT): all-in-one files run
        missing = [what for what, prefix in (("CLIP-L", "text_encoders.clip_l."), ("CLIP-G", "text_encoders.clip_g."),
                                             ("VAE", "first_stage_model.")) if not has(prefix)]
        return _Verdict("checkpoint", "sd3", f"this SD 3.5 file holds the transformer but not its {', '.join(missing)}: "
                        "use the all-in-one file that includes them, or the model's diffusers folder",
                        UnsupportedModel) if missing else _Verdict("checkpoint", "sd3")
    if has("double_blocks.", "model.diffusion_model.double_blocks."):  # BFL / ComfyUI FLUX transformer names
        part = identify(header)
        if part is None or part.role != "transformer":
            return _Verdict("unknown", "", "this FLUX transformer file lacks tensors every FLUX model has (img_in): "
                            "it is incomplete", UnsupportedModel)
        return _Verdict("checkpoint", "flux1" if part.arch == "flux1" else "flux2")
    zimage = _zimage_verdict(tensors, has)
    if zimage is not None:
        return zimage
    if any(has(f"{p}img_in.") and has(f"{p}txt_norm.") and has(f"{p}transformer_blocks.0.img_mod.")
           for p in ("", "model.diffusion_model.")):  # Qwen-Image's MMDiT (diffusers' and ComfyUI's names)
        return _Verdict("checkpoint", "qwen_image", QWEN_IMAGE_TRANSFORMER_PROBLEM, UnsupportedModel)

    if _reference.is_ip_adapter_header(header):  # an IP-Adapter: family from its cross-attention width
        family, variant, problem = _reference.adapter_verdict(header)
        return _Verdict(_reference.KIND, family, problem, UnsupportedModel, variant)
    if _reference.is_clip_vision_header(header):  # the image encoder IP-Adapters read pictures with
        return _Verdict(_reference.ENCODER_KIND, "", _reference.ENCODER_PROBLEM, UnsupportedModel)
    if _reference.is_redux_header(header):  # FLUX.1 Redux: reference images for FLUX.1
        return _Verdict(_reference.REDUX_KIND, "flux1", _reference.REDUX_PROBLEM, UnsupportedModel)
    if _reference.is_siglip_vision_header(header):  # the image encoder Redux reads pictures with
        return _Verdict(_reference.ENCODER_KIND, "", _reference.SIGLIP_PROBLEM, UnsupportedModel, "siglip")

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
    tiny = _tiny.decoder_state(tensors)
    if tiny is not None:  # a tiny autoencoder (TAEF2's taef2.safetensors, ComfyUI's vae_approx/*_decoder)
        return _Verdict(_tiny.KIND, _tiny.family_of(tiny, name), _tiny.PROBLEM.format(name=name), UnsupportedModel)
    if _looks_like_upscaler(tensors, has):
        return _Verdict("upscaler", "", UPSCALER_PROBLEM, UnsupportedModel)
    if "conv_in.weight" in tensors and has("time_embedding.") and has("down_blocks."):
        return _Verdict("unknown", "", "this is only the UNet of a diffusers model: open the model's folder "
                        "(the one with model_index.json) instead", UnsupportedModel)
    return _Verdict("unknown", "", UNKNOWN_PROBLEM, UnsupportedModel)


ZIMAGE_TRANSFORMER_PROBLEM = (
    "this is a Z-Image transformer alone: it also needs the Qwen3-4B text encoder (qwen_3_4b) and the FLUX VAE "
    "(ae.safetensors); open a Z-Image diffusers folder (the one with model_index.json) instead")


QWEN_IMAGE_TRANSFORMER_PROBLEM = (
    "this is a Qwen-Image transformer alone: it also needs the Qwen2.5-VL-7B text encoder (qwen_2.5_vl_7b) and the "
    "Qwen-Image VAE; open a Qwen-Image diffusers folder (the one with model_index.json) instead")


def _zimage_verdict(tensors, has) -> _Verdict | None:
    """Z-Image's single-stream DiT, in the official / ComfyUI names (``layers.N.attention.qkv``,
    ``x_embedder``, optionally under ``model.diffusion_model.``) or diffusers' (``all_x_embedder.2-1``):
    its blocks' ``adaLN_modulation.0`` (Lumina 2's is ``.1``) next to a caption embedder. The Fun
    ControlNets (``control_`` blocks) are control models (``engine.files.control``)."""
    for prefix in ("", "model.diffusion_model."):
        if f"{prefix}layers.0.adaLN_modulation.0.weight" in tensors and has(f"{prefix}cap_embedder."):
            return _Verdict("checkpoint", "zimage", ZIMAGE_TRANSFORMER_PROBLEM, UnsupportedModel)
    return None


def _looks_like_upscaler(tensors, has) -> bool:
    """ESRGAN/Real-ESRGAN RRDB (new and old layouts) and Real-ESRGAN compact (SRVGGNetCompact: a
    ``body`` of convolutions and PReLUs only, the first taking RGB) — what spandrel reads as upscalers."""
    if ("conv_first.weight" in tensors and has("body.")) or ("model.0.weight" in tensors and has("model.1.sub.")):
        return True
    first = tensors.get("body.0.weight")
    return (first is not None and len(first.shape) == 4 and first.shape[1] in (1, 3, 4)
            and all(k.startswith("body.") for k in tensors))


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


# A LoRA's layer names without the prefix of the tool that saved it: diffusers / PEFT ``transformer.``,
# ComfyUI / BFL ``diffusion_model.``, kohya ``lora_unet_`` (then "_" for "."), XLabs none.
_DIT_PREFIX = re.compile(r"^(?:base_model\.model\.|transformer\.|model\.diffusion_model\.|diffusion_model\.|"
                         r"lora_unet_|lora_transformer_)?")
_FLUX_BLOCK = re.compile(r"^(?:double_blocks|single_blocks|single_transformer_blocks)[._]\d+[._]")
_QWEN_BLOCK = re.compile(r"^transformer_blocks[._]\d+[._](?:img_mlp|txt_mlp|img_mod|txt_mod)[._]")
_SD3_BLOCK = re.compile(r"^(?:joint_blocks[._]\d+[._]|transformer_blocks[._]\d+[._]attn2[._])")
_ZIMAGE_BLOCK = re.compile(r"^(?:layers|noise_refiner|context_refiner)[._]\d+[._](?:attention|feed_forward|adaLN)")
_JOINT_BLOCK = re.compile(r"^transformer_blocks[._](\d+)[._]attn[._]to_q[._]")  # SD3, FLUX.1 double, Qwen-Image


def _transformer_lora_family(header: SafetensorsHeader) -> str:
    """The family of a LoRA for a diffusion transformer, told by its layer names in any of the
    layouts users have ("" when it is not one, or the names alone cannot tell)."""
    tensors = header.tensors
    layers = {k: _DIT_PREFIX.sub("", k) for k in tensors if not k.startswith(("lora_te", "text_encoder"))}
    if any(_FLUX_BLOCK.match(rest) for rest in layers.values()):
        return _flux_generation(tensors, layers)
    if any(_QWEN_BLOCK.match(rest) for rest in layers.values()):
        return "qwen_image"
    if any(_SD3_BLOCK.match(rest) for rest in layers.values()):
        return "sd3"
    if any(_ZIMAGE_BLOCK.match(rest) for rest in layers.values()):
        return "zimage"
    blocks = [int(m.group(1)) for rest in layers.values() if (m := _JOINT_BLOCK.match(rest))]
    if not blocks:
        return ""
    # Joint (two-stream) blocks alone: SD 3.5's, FLUX.1's double blocks and Qwen-Image's share their names.
    if any(k.startswith(("text_encoder_2.", "lora_te2_")) for k in tensors):
        return "sd3"  # CLIP-G: FLUX.1 has CLIP-L alone, Qwen-Image no CLIP
    family = _transformer_metadata_family(header.metadata)
    if family:
        return family
    width = next((info.shape[1] for k, info in tensors.items() if _JOINT_BLOCK.match(layers.get(k, ""))
                  and k.endswith(("lora_A.weight", "lora_down.weight")) and len(info.shape) == 2), 0)
    if width in (1536, 2432):  # SD 3 / 3.5 Medium, SD 3.5 Large
        return "sd3"
    if width == 3072:  # FLUX.1 has 19 double blocks, Qwen-Image 60
        return "qwen_image" if max(blocks) >= 19 else "flux1"
    return ""


def _flux_generation(tensors, layers: dict[str, str]) -> str:
    """FLUX.1 or FLUX.2: FLUX.2's single blocks fuse attention and MLP into ``to_qkv_mlp_proj``
    (diffusers) and its ``linear1`` is 9 widths out (q, k, v + a gated MLP of 3), FLUX.1's 7."""
    if any("to_qkv_mlp_proj" in rest for rest in layers.values()):
        return "flux2"
    downs = {rest.rsplit("linear1", 1)[0]: info for k, info in tensors.items()
             if (rest := layers.get(k, "")).startswith("single_blocks") and "linear1" in rest
             and rest.endswith(("lora_A.weight", "lora_down.weight")) and len(info.shape) == 2}
    for k, info in tensors.items():
        rest = layers.get(k, "")
        if rest.endswith(("lora_B.weight", "lora_up.weight")) and "linear1" in rest and len(info.shape) == 2:
            down = downs.get(rest.rsplit("linear1", 1)[0])
            if down is not None and info.shape[0] == 9 * down.shape[1]:
                return "flux2"
    return "flux1"


def _lora_family(header: SafetensorsHeader) -> str:
    names = header.tensors
    family = _transformer_lora_family(header)
    if family:
        return family
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.", "te2.")) for k in names):
        return "sdxl"
    for key, info in names.items():  # cross-attention input width = the text encoder's width
        if "attn2" in key and "to_k" in key and key.endswith(("lora_down.weight", "lora_A.weight")) and len(info.shape) == 2:
            family = {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(info.shape[1])
            if family:
                return family
    return _transformer_metadata_family(header.metadata) or _metadata_family(header.metadata)


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


def _transformer_metadata_family(metadata: dict[str, str]) -> str:
    """The diffusion-transformer family a LoRA's modelspec / kohya training metadata names, if any."""
    text = f"{metadata.get('modelspec.architecture', '')} {metadata.get('ss_base_model_version', '')}".lower()
    for words, family in ((("flux2", "flux-2", "flux.2"), "flux2"), (("flux",), "flux1"), (("qwen",), "qwen_image"),
                          (("z-image", "zimage", "z_image"), "zimage"), (("-v3", "sd3"), "sd3")):
        if any(w in text for w in words):
            return family
    return ""


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


def prediction_type(header: SafetensorsHeader, family: str, kind: str = "checkpoint") -> str:
    declared = header.metadata.get("modelspec.prediction_type", "").strip().lower()
    if declared in ("v", "v_prediction", "v-prediction"):
        return "v_prediction"
    if declared in ("epsilon", "eps"):
        return "epsilon"
    sidecar = Path(os.path.splitext(header.path)[0] + ".yaml")
    try:
        with open_regular(sidecar) as f:  # a FIFO or device named .yaml must not block the probe
            text = f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        text = None
    if text is not None:  # A1111 loads the model with this config: no "parameterization: v" means eps
        return "v_prediction" if _V_PARAM.search(text) else "epsilon"
    if "v_pred" in header.tensors:
        return "v_prediction"
    # SD 2.x text-to-image checkpoints are mostly the 768 v models; SD 2 inpainting is epsilon.
    return "v_prediction" if family == "sd2" and kind == "checkpoint" else "epsilon"


def looks_turbo(name: str, metadata: dict[str, str]) -> bool:
    """SD-Turbo / SDXL-Turbo (adversarially distilled): said by modelspec metadata or the name."""
    text = " ".join(metadata.get(k, "") for k in ("modelspec.title", "modelspec.architecture", "modelspec.description",
                                                 "modelspec.implementation"))
    return "turbo" in f"{text} {name}".lower()

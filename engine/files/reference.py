"""Reference-image files: IP-Adapters and the CLIP vision image encoders they read pictures with, from
their safetensors headers alone (never unpickled).

An IP-Adapter is one ``.safetensors`` file whose tensors are ``image_proj.*`` (the projection of the
picture's CLIP embedding into prompt tokens) and ``ip_adapter.*`` (the extra key/value projections of
each cross-attention layer): h94's ``ip-adapter_sd15.safetensors`` and the like, in ComfyUI's
``models/ipadapter`` or A1111's ``models/ControlNet``. Its family comes from the cross-attention width
of those projections (768 SD 1.x, 1024 SD 2.x, 2048 SDXL); its variant from the projection: plain
(the image embedding), "plus" (a resampler over the encoder's hidden states), "full-face".
The image encoder is a transformers ``CLIPVisionModelWithProjection``: a folder (``config.json`` +
``model.safetensors``, h94's ``image_encoder/``) or one file in its names (ComfyUI ``models/clip_vision``).
FLUX.1's reference route is Redux: ``flux1-redux-dev.safetensors`` (``redux_up`` / ``redux_down``: the
projection of a SigLIP image encoder's patch features into T5 prompt tokens; ComfyUI ``models/style_models``),
reading pictures with a SigLIP vision encoder (``sigclip_vision_patch14_384.safetensors`` in ComfyUI
``models/clip_vision``, or a transformers ``SiglipVisionModel`` folder such as Redux's own ``image_encoder/``).
Stdlib and ``engine.api`` only. Any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.files.headers import SafetensorsHeader

KIND = "ipadapter"
UNUSABLE_VARIANTS = ("faceid", "unknown")
ENCODER_KIND = "clipvision"
_WIDTH_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
PROBLEM = "this is an IP-Adapter (reference images), not a checkpoint: use it with a reference image (--reference)"
ENCODER_PROBLEM = "this is a CLIP vision image encoder (for IP-Adapters), not a checkpoint"
REDUX_KIND = "redux"
REDUX_PROBLEM = ("this is a FLUX.1 Redux model (reference images for FLUX.1), not a checkpoint: use it with a "
                 "reference image (--reference)")
SIGLIP_PROBLEM = "this is a SigLIP vision image encoder (for FLUX.1 Redux), not a checkpoint"


def is_ip_adapter_header(header: SafetensorsHeader) -> bool:
    names = header.tensors
    return any(k.startswith("image_proj.") for k in names) and any(k.startswith("ip_adapter.") for k in names)


def is_clip_vision_header(header: SafetensorsHeader) -> bool:
    names = header.tensors
    return "visual_projection.weight" in names and "vision_model.embeddings.patch_embedding.weight" in names


def is_redux_header(header: SafetensorsHeader) -> bool:
    return {"redux_up.weight", "redux_down.weight"} <= header.tensors.keys()


def is_siglip_vision_header(header: SafetensorsHeader) -> bool:
    """A SigLIP vision tower (no CLIP projection; a post-layernorm, usually the attention-pool head)."""
    names = header.tensors
    return ("vision_model.embeddings.patch_embedding.weight" in names and "visual_projection.weight" not in names
            and "vision_model.post_layernorm.weight" in names and "vision_model.embeddings.class_embedding" not in names)


def redux_widths(header: SafetensorsHeader) -> tuple[int, int]:
    """(the image-encoder width it reads, the prompt-token width it writes) of a Redux file."""
    up, down = header.tensors["redux_up.weight"].shape, header.tensors["redux_down.weight"].shape
    return int(up[1]), int(down[0])


@dataclass(frozen=True)
class AdapterShape:
    """What an IP-Adapter's header says: its cross-attention width, how many cross-attention layers it
    has keys for, its variant, and the image-encoder width it reads (``uses_hidden``: the encoder's
    hidden states, else its projected image embedding)."""

    cross_width: int
    layers: int
    variant: str
    encoder_width: int
    uses_hidden: bool
    problem: str = ""


def adapter_shape(header: SafetensorsHeader) -> AdapterShape:
    s = header.shapes()
    keys = [k for k in s if k.startswith("ip_adapter.") and k.endswith(".to_k_ip.weight")]
    cross = s[keys[0]][1] if keys and len(s[keys[0]]) == 2 else 0
    proj = {k.removeprefix("image_proj."): v for k, v in s.items() if k.startswith("image_proj.")}
    if "perceiver_resampler.proj_in.weight" in proj or "proj.0.weight" in proj and "proj.3.weight" not in proj:
        return AdapterShape(cross, len(keys), "faceid", 0, False,
                            "IP-Adapter FaceID models are not supported (they need a face-recognition model)")
    if "proj.weight" in proj:
        return AdapterShape(cross, len(keys), "", proj["proj.weight"][1], False)
    if "proj.3.weight" in proj:
        return AdapterShape(cross, len(keys), "full-face", proj["proj.0.weight"][1], True)
    if "latents" in proj and "proj_in.weight" in proj:
        return AdapterShape(cross, len(keys), "plus", proj["proj_in.weight"][1], True)
    return AdapterShape(cross, len(keys), "unknown", 0, False, "an IP-Adapter of a kind Easel does not know")


def adapter_verdict(header: SafetensorsHeader) -> tuple[str, str, str]:
    """(family, variant, problem) of an IP-Adapter file; family "" when its width names none (a test model)."""
    shape = adapter_shape(header)
    return _WIDTH_FAMILY.get(shape.cross_width, ""), shape.variant, shape.problem or PROBLEM


def encoder_widths(header: SafetensorsHeader) -> tuple[int, int]:
    """(hidden size, projection width) of a CLIP vision encoder file."""
    proj = header.tensors["visual_projection.weight"].shape
    return int(proj[1]), int(proj[0])


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family or "an unknown family")

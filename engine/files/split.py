"""ComfyUI's split layout, for every transformer family: a denoiser file in ``models/diffusion_models``
(or ``models/unet``), its text encoders in ``models/text_encoders`` (or ``models/clip``) and its VAE in
``models/vae``, each a ``.safetensors`` file of its own.

``identify`` says what one file is from its safetensors header alone (tensor names and a few shapes
that hold at any size), by the ``SIGNATURES`` table; ``find_parts`` finds the parts a denoiser
needs (``NEEDS``) in ComfyUI's folders relative to it, or raises ``MissingPart``: one plain line
naming the missing part and where to put it. ``find_tokenizer`` finds the tokenizer files a text
encoder needs on this computer (never downloading). Families add rows here (SD3, Z-Image,
Qwen-Image ...) and do the loading themselves (``engine.core.parts`` has what they share). Stdlib and
``engine.api`` only; any thread; reads headers only.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.api import ModelError, UnsupportedModel
from engine.files.headers import SafetensorsHeader, read_header

DIFFUSION_PREFIX = "model.diffusion_model."  # ComfyUI's prefix for a denoiser's tensors


@dataclass(frozen=True)
class Part:
    """One file of a split model: ``role`` "transformer" | "text_encoder" | "vae"; ``arch`` its
    architecture ("flux1", "clip_l", "t5xxl", "ae16" ...); ``variant`` what the signature tells
    ("dev" / "schnell" / "fill" / "kontext" for a FLUX.1 transformer); ``path`` "" until found on disk."""

    role: str
    arch: str
    variant: str = ""
    path: str = ""
    prefix: str = ""  # where its tensors sit inside an all-in-one file ("" for a file of its own)


@dataclass(frozen=True)
class Signature:
    role: str
    arch: str
    label: str  # what the missing-part line calls it ("a T5-XXL text encoder")
    matches: Callable[[dict], bool]  # tensor name (ComfyUI prefix removed) -> TensorInfo
    variant: Callable[[dict], str] = lambda _t: ""
    # When the tensors alone cannot tell this part from another's (SD 3.5's VAE has the FLUX.1 VAE's very
    # shapes), the words one of which its file's name must hold, as ComfyUI users name it (none: any name).
    named: tuple[str, ...] = ()


def _flux1_variant(t: dict) -> str:
    if t["img_in.weight"].shape[-1] == 384:  # 64 latent + 64 masked image + 256 mask channels
        return "fill"
    return "dev" if "guidance_in.in_layer.weight" in t else "schnell"


def _flux2_size(t: dict) -> str:
    """A FLUX.2 [klein] transformer's size from its text width (three Qwen3 hidden states), "" untold."""
    txt_in = t.get("txt_in.weight")
    return {7680: "4b", 12288: "9b"}.get(txt_in.shape[-1], "") if txt_in is not None else ""


# Where a Mistral 3 language model's layers sit: ComfyUI's / Comfy-Org's files ("model."), transformers'
# Mistral3ForConditionalGeneration as saved today ("model.language_model.") and as released ("language_model.model.").
MISTRAL_PREFIXES = ("model.language_model.", "language_model.model.", "model.")
# Llama-layout encoders of other models that share Mistral's tensor names: Llama 2's and Llama 3's vocabularies.
_NOT_MISTRAL_VOCABS = (32000, 128256)


def mistral_prefix(t: dict) -> str | None:
    """The prefix of a Mistral 3 language model's tensors in ``t`` (Llama's layout without Qwen's q/k
    norms or q/k/v biases), else None."""
    for prefix in MISTRAL_PREFIXES:
        embed = t.get(prefix + "embed_tokens.weight")
        if (embed is not None and prefix + "layers.0.self_attn.q_proj.weight" in t
                and prefix + "layers.0.self_attn.q_norm.weight" not in t
                and prefix + "layers.0.self_attn.q_proj.bias" not in t and embed.shape[0] not in _NOT_MISTRAL_VOCABS):
            return prefix
    return None


def _qwen3_width(t: dict) -> int | None:
    embed = t.get("model.embed_tokens.weight")
    return embed.shape[-1] if embed is not None and "model.layers.0.self_attn.q_norm.weight" in t else None


_CLIP_TOKENS = ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight")


def _clip_width(t: dict) -> int | None:
    """A CLIP text encoder's width (Hugging Face names, with or without ``text_model.``), else None."""
    info = next((t[k] for k in _CLIP_TOKENS if k in t), None)
    return info.shape[-1] if info is not None and "encoder.block.0.layer.0.SelfAttention.q.weight" not in t else None


def _vae_latents(t: dict) -> int | None:
    conv = t.get("decoder.conv_in.weight")
    return conv.shape[1] if conv is not None and len(conv.shape) == 4 and "encoder.conv_in.weight" in t else None


def _wan_vae_latents(t: dict) -> int | None:
    """The latent channels of a Wan-layout video VAE (Qwen-Image's: causal 3-D convolutions), Wan's
    original names (``decoder.conv1``) or diffusers' (``decoder.conv_in``)."""
    conv = t.get("decoder.conv1.weight") or t.get("decoder.conv_in.weight")
    return conv.shape[1] if conv is not None and len(conv.shape) == 5 else None


def _qwen25vl(t: dict) -> bool:
    """Qwen2.5-VL's language model (Qwen-Image's text encoder): Qwen2's biased q/k/v, no q/k norm (Qwen3's),
    in the original names (``model.layers``) or transformers' newer ones (``model.language_model.layers``)."""
    return any(f"model.{p}layers.0.self_attn.q_proj.bias" in t and f"model.{p}embed_tokens.weight" in t
               for p in ("", "language_model."))


def _qwen_image(t: dict) -> bool:
    """Qwen-Image's MMDiT in diffusers' names (ComfyUI's files use them too, under its prefix)."""
    return "img_in.weight" in t and "txt_norm.weight" in t and "transformer_blocks.0.img_mod.1.weight" in t


def _qwen_image_variant(t: dict) -> str:
    # ComfyUI marks Qwen-Image-Edit 2511's transformer (reference latents at timestep zero) with this tensor;
    # Qwen-Image-Layered adds a second time embedding. The other Edit models have the generator's tensors.
    if "__index_timestep_zero__" in t:
        return "edit-plus"
    return "layered" if "time_text_embed.addition_t_embedding.weight" in t else ""


def _sd3(t: dict) -> bool:
    return "joint_blocks.0.x_block.attn.qkv.weight" in t and "x_embedder.proj.weight" in t


def _zimage(t: dict) -> bool:
    """Z-Image's single-stream DiT in Tongyi-MAI's / ComfyUI's names (Lumina 2's modulation is ``.1``)."""
    return "layers.0.adaLN_modulation.0.weight" in t and "layers.0.attention.qkv.weight" in t and any(
        k.startswith("cap_embedder.") for k in t) and not any(k.startswith("control_") for k in t)


# Checked in order; the first that matches names the file.
SIGNATURES: tuple[Signature, ...] = (
    # FLUX.2 [dev]: [klein]'s blocks plus the guidance embedder (it is guidance-distilled); Mistral's text width.
    Signature("transformer", "flux2-dev", "a FLUX.2 [dev] transformer",
              lambda t: "double_blocks.0.img_attn.qkv.weight" in t and "double_stream_modulation_img.lin.weight" in t
              and "guidance_in.in_layer.weight" in t, lambda _t: "dev"),
    Signature("transformer", "flux2-9b", "a FLUX.2 [klein] 9B transformer",  # its text encoder is Qwen3-8B
              lambda t: "double_blocks.0.img_attn.qkv.weight" in t and "double_stream_modulation_img.lin.weight" in t
              and _flux2_size(t) == "9b", _flux2_size),
    Signature("transformer", "zimage", "a Z-Image transformer", _zimage),
    Signature("transformer", "flux2", "a FLUX.2 transformer",
              lambda t: "double_blocks.0.img_attn.qkv.weight" in t and "double_stream_modulation_img.lin.weight" in t,
              _flux2_size),
    Signature("transformer", "flux1", "a FLUX.1 transformer",
              lambda t: "double_blocks.0.img_attn.qkv.weight" in t and "img_in.weight" in t, _flux1_variant),
    Signature("transformer", "qwen_image", "a Qwen-Image transformer", _qwen_image, _qwen_image_variant),
    Signature("transformer", "sd3", "an SD 3.5 transformer", _sd3),
    Signature("text_encoder", "clip_g", "a CLIP-G text encoder",
              lambda t: _clip_width(t) == 1280),
    # A CLIP of another width than the released 768 (CLIP-L) and 1280 (CLIP-G): the name says which.
    Signature("text_encoder", "clip_g", "a CLIP-G text encoder",
              lambda t: _clip_width(t) not in (None, 768, 1280), named=("clip_g",)),
    Signature("text_encoder", "clip_l", "a CLIP-L text encoder",
              lambda t: _clip_width(t) not in (None, 1280)),
    Signature("text_encoder", "t5xxl", "a T5-XXL text encoder",
              lambda t: "encoder.block.0.layer.0.SelfAttention.q.weight" in t
              and ("shared.weight" in t or "encoder.embed_tokens.weight" in t)),
    Signature("text_encoder", "qwen25vl", "a Qwen2.5-VL-7B text encoder", _qwen25vl),
    Signature("text_encoder", "qwen3-8b", "a Qwen3-8B text encoder", lambda t: _qwen3_width(t) == 4096),
    Signature("text_encoder", "qwen3", "a Qwen3 text encoder",
              lambda t: "model.layers.0.self_attn.q_norm.weight" in t and "model.embed_tokens.weight" in t),
    Signature("text_encoder", "mistral3", "the Mistral 3 Small text encoder", lambda t: mistral_prefix(t) is not None),
    Signature("vae", "flux2-vae", "the FLUX.2 VAE", lambda t: _vae_latents(t) == 32),
    Signature("vae", "qwen-vae", "the Qwen-Image VAE", lambda t: _wan_vae_latents(t) == 16),
    # SD 3.5's VAE has the FLUX.1 VAE's shapes: only its name tells it (sd3.5_vae.safetensors, sd3_vae ...).
    Signature("vae", "sd3-vae", "the SD 3.5 VAE", lambda t: _vae_latents(t) == 16, named=("sd3", "sd35")),
    Signature("vae", "ae16", "the FLUX.1 VAE (ae.safetensors)", lambda t: _vae_latents(t) == 16),
)
_BY_ARCH: dict[str, Signature] = {}
for _sig in SIGNATURES:
    _BY_ARCH.setdefault(_sig.arch, _sig)

# What each denoiser needs besides itself: (arch, the file name to suggest).
NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "flux1": (("clip_l", "clip_l.safetensors"), ("t5xxl", "t5xxl_fp16.safetensors"), ("ae16", "ae.safetensors")),
    "flux2": (("qwen3", "qwen_3_4b.safetensors"), ("flux2-vae", "flux2-vae.safetensors")),
    "flux2-9b": (("qwen3-8b", "qwen_3_8b.safetensors"), ("flux2-vae", "flux2-vae.safetensors")),
    "flux2-dev": (("mistral3", "mistral_3_small_flux2_bf16.safetensors"), ("flux2-vae", "flux2-vae.safetensors")),
    "zimage": (("qwen3", "qwen_3_4b.safetensors"), ("ae16", "ae.safetensors")),
    "qwen_image": (("qwen25vl", "qwen_2.5_vl_7b.safetensors"), ("qwen-vae", "qwen_image_vae.safetensors")),
    "sd3": (("clip_l", "clip_l.safetensors"), ("clip_g", "clip_g.safetensors"), ("sd3-vae", "sd3.5_vae.safetensors")),
}
# Parts a denoiser runs without (diffusers' SD3 pipelines take no T5): ``find_optional`` looks for them.
OPTIONAL: dict[str, tuple[tuple[str, str], ...]] = {"sd3": (("t5xxl", "t5xxl_fp16.safetensors"),)}
FAMILY_LABELS = {"flux1": "FLUX.1", "flux2": "FLUX.2", "flux2-9b": "FLUX.2 [klein] 9B",
                 "flux2-dev": "FLUX.2 [dev]", "zimage": "Z-Image",
                 "qwen_image": "Qwen-Image", "sd3": "SD 3.5"}
# (arch, variant) -> why that variant cannot run yet (a family adds a line when a file of its
# architecture can be named but not run).
UNSUPPORTED_VARIANTS: dict[tuple[str, str], str] = {
    ("qwen_image", "layered"): "Qwen-Image-Layered transformers (image layers) are not supported yet: use Qwen-Image "
                               "or Qwen-Image-Edit",
}

# ComfyUI's model folders for each role (the first is the one a message suggests); Forge's names
# (``models/Stable-diffusion``, ``text_encoder``, ``VAE``) and a transformer put among checkpoints too.
FOLDERS = {"transformer": ("diffusion_models", "unet", "checkpoints", "Stable-diffusion"),
           "text_encoder": ("text_encoders", "clip", "text_encoder"), "vae": ("vae", "VAE")}

# Tokenizer files: per text encoder, the folders (relative to ComfyUI's install, or HF cache repos and
# their subfolder) that hold them; a folder qualifies when it has one of ``TOKENIZER_FILES``.
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "vocab.json")  # vocab.json: with merges.txt (Qwen's BPE)
TOKENIZERS: dict[str, dict] = {
    "t5xxl": {
        "comfy": ("comfy/text_encoders/t5_tokenizer",),
        "hf": (("black-forest-labs/FLUX.1-dev", "tokenizer_2"), ("black-forest-labs/FLUX.1-schnell", "tokenizer_2"),
               ("stabilityai/stable-diffusion-3.5-large", "tokenizer_3"),
               ("stabilityai/stable-diffusion-3.5-medium", "tokenizer_3"), ("google/t5-v1_1-xxl", "")),
        "label": "the T5 tokenizer",
    },
    # Qwen3 has Qwen2.5's vocabulary: ComfyUI keeps one copy (``qwen25_tokenizer``) for both (Z-Image,
    # FLUX.2 [klein] 4B and Qwen-Image read it).
    "qwen3": {
        "comfy": ("comfy/text_encoders/qwen25_tokenizer",),
        "hf": (("black-forest-labs/FLUX.2-klein-4B", "tokenizer"), ("black-forest-labs/FLUX.2-klein-base-4B", "tokenizer"),
               ("Tongyi-MAI/Z-Image-Turbo", "tokenizer"), ("Tongyi-MAI/Z-Image", "tokenizer"), ("Qwen/Qwen3-4B", "")),
        "label": "the Qwen3 tokenizer",
    },
    "qwen25vl": {
        "comfy": ("comfy/text_encoders/qwen25_tokenizer",),
        "hf": (("Qwen/Qwen-Image", "tokenizer"), ("Qwen/Qwen-Image-Edit", "tokenizer"),
               ("Qwen/Qwen-Image-Edit-2509", "tokenizer"), ("Qwen/Qwen2.5-VL-7B-Instruct", "")),
        "label": "the Qwen2.5-VL tokenizer",
    },
    "qwen3-8b": {
        "comfy": ("comfy/text_encoders/qwen25_tokenizer",),
        "hf": (("black-forest-labs/FLUX.2-klein-9B", "tokenizer"), ("black-forest-labs/FLUX.2-klein-base-9B", "tokenizer"),
               ("Qwen/Qwen3-8B", "")),
        "label": "the Qwen3 tokenizer",
    },
    # ComfyUI keeps Mistral's (Tekken) inside its text encoder file: the Hugging Face tokenizer files go beside it.
    "mistral3": {
        "comfy": (),
        "hf": (("black-forest-labs/FLUX.2-dev", "tokenizer"), ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", "")),
        "label": "the Mistral 3 tokenizer",
        "files": "tokenizer.json and tokenizer_config.json (with chat_template.jinja)",
    },
}


class MissingPart(UnsupportedModel):
    """A split model lacks a part; ``problem`` says which and where to put it (one line)."""


def _tensors(header: SafetensorsHeader) -> dict:
    return {(k[len(DIFFUSION_PREFIX):] if k.startswith(DIFFUSION_PREFIX) else k): v for k, v in header.tensors.items()}


# Where ComfyUI's all-in-one checkpoints keep each part beside ``model.diffusion_model.``.
EMBEDDED = {"clip_l": "text_encoders.clip_l.transformer.", "clip_g": "text_encoders.clip_g.transformer.",
            "t5xxl": "text_encoders.t5xxl.transformer.", "ae16": "vae.", "flux2-vae": "vae.",
            "sd3-vae": "first_stage_model."}


def _embedded_matches(arch: str, tensors: dict) -> bool:
    """Whether ``tensors`` (under ``EMBEDDED[arch]`` in an all-in-one file) are that part: the prefix
    names a CLIP already, so any CLIP's tensors do; the others' signatures must match."""
    if arch in ("clip_l", "clip_g"):
        return _clip_width(tensors) is not None
    return _BY_ARCH[arch].matches(tensors)


def identify(header: SafetensorsHeader) -> Part | None:
    """What the file whose header this is holds, as a split-layout part; None when no row matches."""
    tensors = _tensors(header)
    if any(k.startswith(DIFFUSION_PREFIX) for k in header.tensors):  # an all-in-one file: name its denoiser
        tensors = {k[len(DIFFUSION_PREFIX):]: v for k, v in header.tensors.items() if k.startswith(DIFFUSION_PREFIX)}
    filename = Path(header.path).name.lower()
    for sig in SIGNATURES:
        if sig.matches(tensors) and (not sig.named or any(word in filename for word in sig.named)):
            variant = sig.variant(tensors)
            # FLUX.1 Kontext has [dev]'s very tensors: only its name (or a folder's pipeline) tells it.
            if (sig.arch, variant) == ("flux1", "dev") and "kontext" in Path(header.path).name.lower():
                variant = "kontext"
            # FLUX.2 [klein] base and distilled have the same tensors too: BFL's names say "base".
            if sig.arch.startswith("flux2") and sig.arch != "flux2-dev":
                variant = ("base" if "base" in Path(header.path).name.lower() else "distilled") + \
                    (f"-{variant}" if variant else "")
            # Z-Image Turbo and Base share every tensor: the name tells them apart, as the released files' do.
            if sig.arch == "zimage" and "turbo" in filename:
                variant = "turbo"
            # Qwen-Image-Edit (and Edit 2509 / Plus) share the generator's tensors: ComfyUI's names say "edit".
            if sig.arch == "qwen_image" and not variant and "edit" in filename:
                variant = "edit-plus" if any(w in filename for w in ("2509", "2511", "plus")) else "edit"
            # SD 3.5 Large Turbo has Large's tensors: its name says "turbo" (Medium / Large from the shapes).
            if sig.arch == "sd3" and "turbo" in filename:
                variant = "turbo"
            return Part(sig.role, sig.arch, variant, header.path)
    return None


def denoisers_in(folder: str | os.PathLike[str]) -> list[Path] | None:
    """The transformer files of ComfyUI's split layout in ``folder``: ComfyUI's install, its ``models``
    folder, or its ``diffusion_models`` / ``unet`` folder itself (told by headers); None when ``folder``
    is none of those. Reads headers only."""
    from engine.files.headers import read_gguf_header, sniff

    folder = Path(folder)
    denoiser_folders = FOLDERS["transformer"][:2]  # checkpoints/ holds SD checkpoints too: pick those by file
    if folder.name in denoiser_folders:
        places = [folder]
    else:
        places = next(([base / n for n in denoiser_folders if (base / n).is_dir()] for base in (folder, folder / "models")
                       if any((base / n).is_dir() for n in denoiser_folders)), None)
        if places is None:
            return None
    found = []
    for place in places:
        for path in sorted(place.iterdir()):
            if path.suffix.lower() not in (".safetensors", ".gguf") or not path.is_file():
                continue
            try:
                part = identify(read_gguf_header(path) if sniff(path) == "gguf" else read_header(path))
            except ModelError:
                continue
            if part is not None and part.role == "transformer":
                found.append(path)
    return found


def models_root(path: str | os.PathLike[str]) -> Path | None:
    """ComfyUI's ``models`` folder above a denoiser file (the parent of ``diffusion_models``, ``unet`` ...)."""
    for parent in Path(path).resolve().parents:
        if parent.name in FOLDERS["transformer"]:
            return parent.parent
    return None


def _candidates(role: str, denoiser: Path, root: Path | None) -> list[Path]:
    folders = [denoiser.parent]
    if root is not None:
        folders += [root / name for name in FOLDERS[role]]
    seen, out = set(), []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.safetensors")):
            if path not in seen and path != denoiser and path.is_file():
                seen.add(path)
                out.append(path)
    return out


def _find(path: Path, arch: str, inside: dict, looked: dict[str, list[Path]]) -> Part | None:
    """``arch``'s part for the denoiser at ``path``: inside it (an all-in-one checkpoint, whose header's
    tensors are ``inside``), beside it or in ComfyUI's folders; None when it is nowhere."""
    role = _BY_ARCH[arch].role
    prefix = EMBEDDED.get(arch, "")
    embedded = {k[len(prefix):]: v for k, v in inside.items() if prefix and k.startswith(prefix)}
    if embedded and _embedded_matches(arch, embedded):  # an all-in-one checkpoint carries it
        return Part(role, arch, "", str(path), prefix)
    if role not in looked:
        looked[role] = _candidates(role, path, models_root(path))
    for candidate in looked[role]:
        try:
            part = identify(read_header(candidate))
        except ModelError:
            continue
        if part is not None and part.arch == arch:
            return part
    return None


def part_folder(denoiser_path: str | os.PathLike[str], arch: str) -> Path:
    """The folder a message tells the user to put ``arch``'s file in (ComfyUI's, else beside the denoiser)."""
    root = models_root(denoiser_path)
    return (root / FOLDERS[_BY_ARCH[arch].role][0]) if root is not None else Path(denoiser_path).parent


def find_parts(denoiser: Part) -> dict[str, Part]:
    """arch -> Part (path set) for every part ``denoiser`` needs, found beside it or in ComfyUI's
    folders (and each text encoder's tokenizer files: ``find_tokenizer``). Raises MissingPart naming
    the first part that is not there."""
    path = Path(denoiser.path)
    found: dict[str, Part] = {}
    looked: dict[str, list[Path]] = {}
    inside = read_header(path).tensors if path.suffix.lower() != ".gguf" else {}
    for arch, suggested in NEEDS.get(denoiser.arch, ()):
        part = _find(path, arch, inside, looked)
        if part is None:
            raise MissingPart(str(path), f"this {FAMILY_LABELS.get(denoiser.arch, denoiser.arch)} transformer needs "
                              f"{_BY_ARCH[arch].label}: put {suggested} in {part_folder(path, arch)}")
        found[arch] = part
        if arch in TOKENIZERS:
            find_tokenizer(arch, path)  # raises MissingPart saying which files to add
    return found


def find_optional(denoiser: Part) -> tuple[dict[str, Part], tuple[str, ...]]:
    """(arch -> Part found, one line per part left out) for the parts ``denoiser`` can run without
    (``OPTIONAL``: SD 3.5's T5-XXL), with their tokenizers; never raises for a missing one."""
    path = Path(denoiser.path)
    found: dict[str, Part] = {}
    missing: list[str] = []
    inside = read_header(path).tensors if path.suffix.lower() != ".gguf" else {}
    for arch, suggested in OPTIONAL.get(denoiser.arch, ()):
        part = _find(path, arch, inside, {})
        if part is None:
            missing.append(f"{_BY_ARCH[arch].label[0].upper()}{_BY_ARCH[arch].label[1:]} is not there, so it was "
                           f"left out: put {suggested} in {part_folder(path, arch)} to use it")
            continue
        if arch in TOKENIZERS:
            try:
                find_tokenizer(arch, path)
            except MissingPart as exc:
                missing.append(f"{exc.problem[0].upper()}{exc.problem[1:]} "
                               f"(so the {_BY_ARCH[arch].label[2:]} was left out)")
                continue
        found[arch] = part
    return found, tuple(missing)


def hf_snapshots(repo: str) -> list[Path]:
    """The snapshot folders of ``repo`` in the Hugging Face cache (newest first)."""
    from engine.models.locations import hf_hub_cache

    pattern = os.path.join(hf_hub_cache(), "models--" + repo.replace("/", "--"), "snapshots", "*")
    return sorted((Path(p) for p in glob.glob(pattern)), key=lambda p: p.stat().st_mtime, reverse=True)


def find_tokenizer(arch: str, denoiser_path: str | os.PathLike[str]) -> Path:
    """The folder holding ``arch``'s tokenizer files for the split model at ``denoiser_path``:
    ComfyUI's own copy (in its install, above ``models``), a ``<arch>_tokenizer`` folder beside the
    text encoders, or a Hugging Face cache snapshot. Raises MissingPart saying which files to add."""
    spec = TOKENIZERS[arch]
    root = models_root(denoiser_path)
    places: list[Path] = [Path(denoiser_path).resolve().parent / f"{arch}_tokenizer"]
    if root is not None:
        places += [root.parent / rel for rel in spec["comfy"]]
        places += [root / folder / f"{arch}_tokenizer" for folder in FOLDERS["text_encoder"]]
    for repo, sub in spec["hf"]:
        places += [snap / sub if sub else snap for snap in hf_snapshots(repo)]
    for place in places:
        if any((place / name).is_file() for name in TOKENIZER_FILES):
            return place
    target = (root / FOLDERS["text_encoder"][0] / f"{arch}_tokenizer") if root is not None else places[0]
    other = "vocab.json + merges.txt" if arch.startswith("qwen") else "spiece.model"
    files = spec.get("files", f"tokenizer.json (or {other})")
    raise MissingPart(str(denoiser_path), f"{spec['label']} files are not on this computer: put {files} in {target}, "
                      f"or download {spec['hf'][0][0]}'s {spec['hf'][0][1] or 'tokenizer'} folder")

"""Reference images (IP-Adapter), written once for every family whose capabilities take them.

A family declares ``Capabilities.references`` (how many it takes: ``Capabilities.check_request`` refuses
more, in one line); its runner asks this module for the rest: ``active`` drops those of weight 0 (a job with only
those runs exactly as one without), ``References`` resolves each reference's IP-Adapter (a path, a name
in the model library, or the library's choice for the family), checks it fits the generator's UNet,
finds its CLIP vision image encoder (beside the adapter in an ``image_encoder/`` folder, ComfyUI's
``models/clip_vision``, the Hugging Face cache, all through the model library; or a path), loads both
safetensors-only and offline, puts the adapter into the UNet with diffusers' IP-Adapter loader
(one copy per reference, each with its own scale), encodes the pictures once per job, and takes the
adapter out again (the UNet's own attention processors back) when a job has no references, so that
job's pixels are exactly those of a model that never had one. Engine thread, except ``active``,
``a1111_line``, ``editor_pictures`` and ``editor_params`` (any thread).

An instruction editor (Qwen-Image-Edit Plus, FLUX.2 [klein]) takes reference images as further input
pictures, with no adapter: ``editor_pictures`` gives them to its pipeline, ``editor_params`` records them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from engine.api import InvalidRequest, ModelError, ReferenceInput
from engine.core.loading import named_model
from engine.files import reference as files
from engine.files.headers import read_header

log = logging.getLogger(__name__)

WHERE = ("put one (e.g. ip-adapter_sd15.safetensors) in the model folders (ComfyUI models/ipadapter, A1111 "
         "models/ControlNet) or give its path (--ip-adapter)")
# The image encoder an adapter's input width asks for (the names people know them by).
_ENCODER_NAMES = {(1024, False): "CLIP-ViT-H-14 (clip_vision_h.safetensors, or h94/IP-Adapter's models/image_encoder)",
                  (1280, True): "CLIP-ViT-H-14 (clip_vision_h.safetensors, or h94/IP-Adapter's models/image_encoder)",
                  (1280, False): "CLIP-ViT-bigG-14 (clip_vision_g.safetensors, or h94/IP-Adapter's "
                                 "sdxl_models/image_encoder)",
                  (1664, True): "CLIP-ViT-bigG-14 (clip_vision_g.safetensors)"}
# Attention heads of the encoders people have, by width (a single file's shapes do not say them).
_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}


def active(references) -> tuple:
    """The references that act (weight above 0). Any thread."""
    return tuple(r for r in references if r.weight > 0)


def editor_pictures(references, label: str, notices: list | None = None) -> list:
    """An instruction editor's further input pictures: those of the references that act (weight above 0),
    in order, as RGB. Such a model takes each picture whole, so a weight other than 1 is noted in
    ``notices``. Any thread."""
    from engine import imageprep

    acting = active(references)
    if notices is not None and any(r.weight != 1 for r in acting):
        notices.append(f"{label} takes each reference image whole: their weights were not applied "
                       "(a weight of 0 leaves one out).")
    return [imageprep.as_rgb(r.image, "reference image") for r in acting]


def editor_params(references) -> tuple[tuple[str, str], ...]:
    """The metadata pairs of an instruction editor's acting reference images: how many, and each one's
    "Init image hash"-style hash (the pictures themselves are in the easel JSON). Any thread."""
    from engine.imageprep import source_hash

    acting = active(references)
    if not acting:
        return ()
    return (("Reference images", str(len(acting))),
            ("Reference hashes", " ".join(source_hash(r.image)[:10] for r in acting)))


@dataclass(frozen=True)
class Adapter:
    """One reference's IP-Adapter and image encoder, resolved and checked."""

    path: str
    name: str
    shape: files.AdapterShape
    encoder: str  # a folder (config.json + weights) or one .safetensors file
    hash10: str = ""


def _cross_layers(unet) -> int:
    return sum(1 for name in unet.attn_processors if not name.endswith("attn1.processor"))


def resolve_adapter(ref: ReferenceInput, library, family: str, unet) -> str:
    """The path of ``ref``'s IP-Adapter: its path, its name in the library, or the library's choice
    (one of the generator's family whose width fits ``unet``). InvalidRequest (one line) when none."""
    want = ref.model
    if want:
        path = named_model(want, library, files.KIND, family, folders=False)
        if path is not None:
            return path
        raise InvalidRequest("references", f"no IP-Adapter called {want} ({WHERE})")
    if library is not None:
        library.ensure_scanned()
        width = unet.config.cross_attention_dim
        fitting = []
        for e in library.of_kind(files.KIND):
            if not e.usable or e.family not in (family, ""):
                continue
            try:
                if files.adapter_shape(read_header(e.path)).cross_width == width:
                    fitting.append(e)
            except ModelError:
                continue
        if fitting:  # the family's own first, a plain adapter before a Plus, then by name
            fitting.sort(key=lambda e: (e.family != family, e.info.variant != "", e.name.lower()))
            return fitting[0].path
    raise InvalidRequest("references", f"no IP-Adapter for {files.family_name(family)} in the model library: {WHERE}")


def _encoder_widths(path: str) -> tuple[int, int] | None:
    """(hidden size, projection width) of an image encoder folder or file; None when it is not one."""
    p = Path(path)
    try:
        if p.is_dir():
            config = json.loads((p / "config.json").read_text("utf-8"))
            config = config.get("vision_config", config)
            return int(config["hidden_size"]), int(config["projection_dim"])
        header = read_header(str(p))
        if files.is_clip_vision_header(header):
            return files.encoder_widths(header)
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        pass
    return None


def _encoder_candidates(adapter: str, library, explicit: str) -> list[str]:
    out: list[str] = []
    if explicit:
        out.append(os.path.realpath(Path(explicit).expanduser()))
    here = Path(adapter).parent
    for folder in (here / "image_encoder", here.parent / "image_encoder", here / "models" / "image_encoder"):
        if (folder / "config.json").is_file():
            out.append(str(folder))
    if library is not None:
        library.ensure_scanned()
        for e in library.of_kind(files.ENCODER_KIND):
            parent = Path(e.path).parent
            out.append(str(parent) if (parent / "config.json").is_file() else e.path)
    return out


def find_encoder(adapter: str, shape: files.AdapterShape, library, explicit: str = "") -> str:
    """The image encoder ``adapter`` reads pictures with: the first candidate whose width fits it.
    InvalidRequest (one line, saying which encoder and where it goes) when there is none."""
    for candidate in _encoder_candidates(adapter, library, explicit):
        widths = _encoder_widths(candidate)
        if widths is not None and widths[0 if shape.uses_hidden else 1] == shape.encoder_width:
            return candidate
    if explicit:
        raise InvalidRequest("references", f"{explicit} is not a CLIP vision image encoder that fits "
                             f"{Path(adapter).stem}")
    which = _ENCODER_NAMES.get((shape.encoder_width, shape.uses_hidden), f"one {shape.encoder_width} wide")
    raise InvalidRequest("references", f"this IP-Adapter needs a CLIP vision image encoder: put {which} in ComfyUI's "
                         "models/clip_vision (or an image_encoder folder beside the adapter)")


def load_encoder(path: str, dtype):
    """A CLIPVisionModelWithProjection from a folder or one file (config from its shapes), on the CPU in
    ``dtype``; never fetched, never unpickled. Raises ModelError (one line)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    name = Path(path).name
    try:
        if Path(path).is_dir():
            model = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                                                  dtype=dtype)
        else:
            from safetensors.torch import load_file

            s = read_header(path).shapes()
            patch = s["vision_model.embeddings.patch_embedding.weight"]
            hidden = patch[0]
            positions = s["vision_model.embeddings.position_embedding.weight"][0]
            layers = len({k.split(".")[3] for k in s if k.startswith("vision_model.encoder.layers.")})
            config = CLIPVisionConfig(
                hidden_size=hidden, num_channels=patch[1], patch_size=patch[2],
                image_size=int(math.isqrt(positions - 1)) * patch[2], num_hidden_layers=layers,
                intermediate_size=s["vision_model.encoder.layers.0.mlp.fc1.weight"][0],
                projection_dim=s["visual_projection.weight"][0],
                num_attention_heads=_HEADS.get(hidden, max(1, hidden // 64)), hidden_act="gelu", layer_norm_eps=1e-5)
            model = CLIPVisionModelWithProjection(config)
            state = {k: v for k, v in load_file(path).items() if not k.endswith("position_ids")}
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.endswith("position_ids")]
            if missing or unexpected:
                raise ModelError(name, "its weights are not a CLIP vision encoder's "
                                 f"({', '.join((missing or unexpected)[:2])} …)")
            model = model.to(dtype=dtype)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        log.info("loading image encoder %s failed", path, exc_info=True)
        raise ModelError(name, f"this image encoder cannot be loaded ({' '.join(str(exc).split())[:160]})") from exc
    return model.eval().requires_grad_(False) if isinstance(model, torch.nn.Module) else model


def _adapter_state(path: str) -> dict:
    from safetensors import safe_open

    state: dict = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(path, framework="pt", device="cpu") as f:
        for key in f.keys():
            part, _, rest = key.partition(".")
            if part in state:
                state[part][rest] = f.get_tensor(key)
    return state


class References:
    """The IP-Adapters one generator's UNet carries (none between jobs without references), and the
    image encoder they read with. Engine thread."""

    def __init__(self, library=None, hasher=None, dtype=None):
        self.library = library
        self.hasher = hasher
        self.dtype = dtype
        self.loaded: tuple[str, ...] = ()  # the adapter paths in the UNet now, one per reference
        self._saved = None  # the UNet's own (attention processors, encoder_hid_proj, encoder_hid_dim_type)
        self._encoder: tuple[str, object] | None = None  # (path, model)
        self._hashes: dict[str, str] = {}

    def resolve(self, references, info, unet) -> list[Adapter]:
        """Each reference's adapter and encoder, checked against the generator ``info`` / ``unet``."""
        out = []
        for ref in references:
            path = resolve_adapter(ref, self.library, info.family, unet)
            name = Path(path).stem
            header = read_header(path)
            if not files.is_ip_adapter_header(header):
                raise InvalidRequest("references", f"{name} is not an IP-Adapter")
            shape = files.adapter_shape(header)
            if shape.problem:
                raise InvalidRequest("references", f"{name}: {shape.problem}")
            width, layers = unet.config.cross_attention_dim, _cross_layers(unet)
            if shape.cross_width != width or shape.layers != layers:
                family = files.adapter_verdict(header)[0]
                what = f"an IP-Adapter for {files.family_name(family)}" if family else "an IP-Adapter of another model"
                raise InvalidRequest("references", f"{name} is {what}, but {info.name} is "
                                     f"{files.family_name(info.family)}: choose an IP-Adapter made for it")
            encoder = find_encoder(path, shape, self.library, ref.encoder if ref.encoder and
                                   Path(ref.encoder).expanduser().exists() else "")
            if path not in self._hashes:
                self._hashes[path] = (self.hasher(path) if self.hasher else "")[:10]
            out.append(Adapter(path, name, shape, encoder, self._hashes[path]))
        if len({a.encoder for a in out}) > 1:
            raise InvalidRequest("references", "these IP-Adapters read pictures with different image encoders: use "
                                 "IP-Adapters of one kind together")
        return out

    def apply(self, pipe, references, adapters: list[Adapter], device, cfg: bool) -> dict:
        """Put the adapters into ``pipe``'s UNet (kept when they are the ones there already), set each
        one's weight, encode the pictures; returns the call's ``ip_adapter_image_embeds``."""
        import torch

        unet = pipe.unet
        paths = tuple(a.path for a in adapters)
        if paths != self.loaded:
            self.remove(unet)
            self._saved = (dict(unet.attn_processors), unet.encoder_hid_proj, unet.config.encoder_hid_dim_type)
            feature_extractor = getattr(pipe, "feature_extractor", None)
            try:
                pipe.load_ip_adapter([_adapter_state(p) for p in paths], subfolder=[""] * len(paths),
                                     weight_name=[""] * len(paths), image_encoder_folder=None)
            except (ValueError, RuntimeError, KeyError) as exc:
                self.remove(unet)
                raise ModelError(adapters[0].name, f"this IP-Adapter cannot be loaded ({' '.join(str(exc).split())[:160]})") from exc
            finally:
                if feature_extractor is None and getattr(pipe, "feature_extractor", None) is not None:
                    pipe.register_modules(feature_extractor=None)  # the loader's own; the embeddings are made here
            self.loaded = paths
        pipe.set_ip_adapter_scale([float(r.weight) for r in references])

        encoder_path = adapters[0].encoder
        if self._encoder is None or self._encoder[0] != encoder_path:
            self._encoder = (encoder_path, load_encoder(encoder_path, self.dtype))
        encoder = self._encoder[1].to(device)
        from transformers import CLIPImageProcessor

        size = encoder.config.image_size
        processor = CLIPImageProcessor(size=size, crop_size=size)
        embeds = []
        with torch.inference_mode():
            for ref, adapter in zip(references, adapters):
                pixels = processor(ref.image.convert("RGB"), return_tensors="pt").pixel_values
                pixels = pixels.to(device=device, dtype=next(encoder.parameters()).dtype)
                if adapter.shape.uses_hidden:  # Plus / Full Face: the penultimate hidden states, against a blank picture
                    emb = encoder(pixels, output_hidden_states=True).hidden_states[-2]
                    neg = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
                else:  # the projected image embedding, against zeros
                    emb = encoder(pixels).image_embeds
                    neg = torch.zeros_like(emb)
                emb, neg = emb[None], neg[None]  # (batch, images, ...)
                embeds.append(torch.cat([neg, emb]) if cfg else emb)
        return {"ip_adapter_image_embeds": embeds}

    def remove(self, unet) -> None:
        """Take the adapters out of ``unet``: its own attention processors and projection back."""
        if self._saved is None or unet is None:
            self.loaded = ()
            return
        processors, proj, dim_type = self._saved
        unet.set_attn_processor(processors)
        unet.encoder_hid_proj = proj
        unet.config.encoder_hid_dim_type = dim_type
        self._saved = None
        self.loaded = ()

    def park(self) -> None:
        if self._encoder is not None:
            self._encoder[1].to("cpu")

    def nbytes(self) -> int:
        if self._encoder is None:
            return 0
        return sum(p.numel() * p.element_size() for p in self._encoder[1].parameters())

    def clear(self, unet=None) -> None:
        self.remove(unet)
        self._encoder = None


def module_name(adapter: Adapter) -> str:
    """A1111's ControlNet-extension module name of an adapter's image encoder."""
    widths = _encoder_widths(adapter.encoder) or (0, 0)
    return {1280: "ip-adapter_clip_h", 1664: "ip-adapter_clip_g"}.get(widths[0], "ip-adapter_clip")


def a1111_line(ref: ReferenceInput, adapter: Adapter) -> str:
    """A1111's ``ControlNet N`` value of an IP-Adapter unit: Module, Model name [hash], Weight."""
    model = f"{adapter.name} [{adapter.hash10}]" if adapter.hash10 else adapter.name
    weight = repr(float(ref.weight))
    weight = weight[:-2] if weight.endswith(".0") else weight
    return f"Module: {module_name(adapter)}, Model: {model}, Weight: {weight}, Guidance Start: 0, Guidance End: 1"


# ------------------------------------------------------------------------------------ FLUX.1 Redux

REDUX_WHERE = ("put flux1-redux-dev.safetensors in the model folders (ComfyUI models/style_models) or give its "
               "path (--ip-adapter)")
SIGLIP_WHERE = ("FLUX.1 Redux reads pictures with a SigLIP image encoder: put sigclip_vision_patch14_384.safetensors "
                "in ComfyUI's models/clip_vision (or Redux's image_encoder folder beside it)")
# What a SigLIP file's shapes do not say: the picture size (SigLIP so400m-patch14-384's 729 patches fit
# 378 px as well as 384) and the heads, by width.
_SIGLIP_SIZES = {1152: 384}
_SIGLIP_HEADS = {768: 12, 1152: 16}


@dataclass(frozen=True)
class ReduxModel:
    """One reference's FLUX.1 Redux model (its ``redux_up`` / ``redux_down`` weights) and SigLIP encoder."""

    path: str  # the file, or a FluxPriorReduxPipeline folder (image_embedder/ + image_encoder/)
    name: str
    weights: str
    encoder: str
    widths: tuple[int, int]  # (encoder width it reads, prompt-token width it writes)
    hash10: str = ""


def _redux_weights(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        found = sorted((p / "image_embedder").glob("*.safetensors")) or sorted(p.glob("*.safetensors"))
        return str(found[0]) if found else ""
    return str(p)


def resolve_redux(ref: ReferenceInput, library) -> str:
    """The path of ``ref``'s Redux model: its path, its name in the library, or the library's one.
    InvalidRequest (one line) when there is none."""
    want = ref.model
    if want:
        path = named_model(want, library, files.REDUX_KIND, "flux1")
        if path is not None:
            return path
        raise InvalidRequest("references", f"no Redux model called {want} ({REDUX_WHERE})")
    if library is not None:
        library.ensure_scanned()
        found = sorted((e for e in library.of_kind(files.REDUX_KIND) if e.usable), key=lambda e: e.name.lower())
        if found:
            return found[0].path
    raise InvalidRequest("references", f"no FLUX.1 Redux model in the model library: {REDUX_WHERE}")


def _siglip_width(path: str) -> int | None:
    p = Path(path)
    try:
        if p.is_dir():
            config = json.loads((p / "config.json").read_text("utf-8"))
            if "siglip" not in str(config.get("model_type", "")):
                return None
            return int(config.get("vision_config", config)["hidden_size"])
        header = read_header(str(p))
        if files.is_siglip_vision_header(header):
            return int(header.tensors["vision_model.embeddings.patch_embedding.weight"].shape[0])
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        pass
    return None


def find_siglip(redux: str, width: int, library, explicit: str = "") -> str:
    """The SigLIP encoder ``redux`` reads with: ``explicit``, Redux's own ``image_encoder/``, one in the
    ComfyUI ``models/clip_vision`` beside its ``models/style_models``, or one in the library, whose width is ``width``. InvalidRequest (one line, saying where it goes) when none fits."""
    here = Path(redux) if Path(redux).is_dir() else Path(redux).parent
    candidates = [os.path.realpath(Path(explicit).expanduser())] if explicit else []
    candidates += [str(f) for f in (here / "image_encoder", here.parent / "image_encoder") if (f / "config.json").is_file()]
    candidates += [str(f) for f in sorted((here.parent / "clip_vision").glob("*.safetensors"))]  # ComfyUI's, beside style_models
    if library is not None:
        library.ensure_scanned()
        for e in library.of_kind(files.ENCODER_KIND):
            parent = Path(e.path).parent
            candidates.append(str(parent) if (parent / "config.json").is_file() else e.path)
    for candidate in candidates:
        if _siglip_width(candidate) == width:
            return candidate
    if explicit:
        raise InvalidRequest("references", f"{explicit} is not a SigLIP image encoder that fits {Path(redux).stem}")
    raise InvalidRequest("references", SIGLIP_WHERE)


def load_siglip(path: str, dtype):
    """A SiglipVisionModel from a folder or one file (its config from the shapes), on the CPU in ``dtype``;
    never fetched, never unpickled. Raises ModelError (one line)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    name = Path(path).name
    try:
        if Path(path).is_dir():
            model = SiglipVisionModel.from_pretrained(path, local_files_only=True, use_safetensors=True, dtype=dtype)
        else:
            from safetensors.torch import load_file

            s = read_header(path).shapes()
            patch = s["vision_model.embeddings.patch_embedding.weight"]
            hidden = patch[0]
            side = math.isqrt(s["vision_model.embeddings.position_embedding.weight"][0])
            config = SiglipVisionConfig(
                hidden_size=hidden, num_channels=patch[1], patch_size=patch[2],
                image_size=_SIGLIP_SIZES.get(hidden, side * patch[2]),
                num_hidden_layers=len({k.split(".")[3] for k in s if k.startswith("vision_model.encoder.layers.")}),
                intermediate_size=s["vision_model.encoder.layers.0.mlp.fc1.weight"][0],
                num_attention_heads=_SIGLIP_HEADS.get(hidden, max(1, hidden // 64)),
                vision_use_head="vision_model.head.probe" in s)
            model = SiglipVisionModel(config)
            state = {k: v for k, v in load_file(path).items() if not k.endswith("position_ids")}
            if not any(k.startswith("vision_model.") for k in model.state_dict()):  # transformers' own names
                state = {k.removeprefix("vision_model."): v for k, v in state.items()}
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.endswith("position_ids")]
            if missing or unexpected:
                raise ModelError(name, f"its weights are not a SigLIP vision encoder's ({', '.join((missing or unexpected)[:2])} …)")
            model = model.to(dtype=dtype)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        log.info("loading image encoder %s failed", path, exc_info=True)
        raise ModelError(name, f"this image encoder cannot be loaded ({' '.join(str(exc).split())[:160]})") from exc
    return model.eval().requires_grad_(False)


class Redux:
    """FLUX.1's reference images: each picture read by a SigLIP encoder and projected by a Redux model
    into extra prompt tokens, weighted by the reference's weight and appended to the T5 prompt (as
    ComfyUI's style-model strength does). Nothing in the model changes, so a job without references is
    exactly the image of a model that never had one. Engine thread."""

    def __init__(self, library=None, hasher=None, dtype=None):
        self.library, self.hasher, self.dtype = library, hasher, dtype
        self._loaded: dict[str, object] = {}  # weights / encoder path -> module (the last ones used)
        self._hashes: dict[str, str] = {}

    def resolve(self, references, token_width: int) -> list[ReduxModel]:
        """Each reference's Redux model and encoder, checked against the transformer's prompt-token width."""
        out = []
        for ref in references:
            path = resolve_redux(ref, self.library)
            name = Path(path).stem if Path(path).is_file() else Path(path).name
            weights = _redux_weights(path)
            try:
                header = read_header(weights) if weights else None
            except ModelError as exc:
                raise InvalidRequest("references", f"{name}: {exc.problem}") from exc
            if header is None or not files.is_redux_header(header):
                raise InvalidRequest("references", f"{name} is not a FLUX.1 Redux model ({REDUX_WHERE})")
            widths = files.redux_widths(header)
            if widths[1] != token_width:
                raise InvalidRequest("references", f"{name} makes prompt tokens {widths[1]} wide, the model's text "
                                     f"encoder {token_width}: choose a Redux model made for it")
            explicit = ref.encoder if ref.encoder and Path(ref.encoder).expanduser().exists() else ""
            encoder = find_siglip(path, widths[0], self.library, explicit)
            if path not in self._hashes:
                self._hashes[path] = (self.hasher(weights) if self.hasher else "")[:10]
            out.append(ReduxModel(path, name, weights, encoder, widths, self._hashes[path]))
        return out

    def _module(self, key: str, make):
        if key not in self._loaded:
            self._loaded[key] = make()
        return self._loaded[key]

    def tokens(self, references, models: list[ReduxModel], device, dtype):
        """The weighted Redux prompt tokens of all references, (1, tokens, width), to append to the prompt."""
        import torch
        from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
        from transformers import SiglipImageProcessor

        keep = {m.weights for m in models} | {m.encoder for m in models}
        self._loaded = {k: v for k, v in self._loaded.items() if k in keep}  # only this job's stay loaded
        out = []
        with torch.inference_mode():
            for ref, m in zip(references, models):
                encoder = self._module(m.encoder, lambda: load_siglip(m.encoder, self.dtype)).to(device)
                embedder = self._module(m.weights, lambda: self._load_embedder(ReduxImageEncoder, m)).to(device)
                size = encoder.config.image_size
                processor = SiglipImageProcessor(size={"height": size, "width": size})
                pixels = processor(ref.image.convert("RGB"), return_tensors="pt").pixel_values
                pixels = pixels.to(device=device, dtype=next(encoder.parameters()).dtype)
                features = encoder(pixels).last_hidden_state
                projected = embedder(features.to(next(embedder.parameters()).dtype)).image_embeds
                out.append(projected.to(dtype) * float(ref.weight))
        return torch.cat(out, dim=1)

    def _load_embedder(self, cls, m: ReduxModel):
        from safetensors.torch import load_file

        try:
            model = cls(redux_dim=m.widths[0], txt_in_features=m.widths[1])
            model.load_state_dict(load_file(m.weights))
        except (OSError, RuntimeError, KeyError) as exc:
            raise ModelError(m.name, f"this Redux model cannot be loaded ({' '.join(str(exc).split())[:160]})") from exc
        return model.to(dtype=self.dtype).eval().requires_grad_(False)

    def park(self) -> None:
        for module in self._loaded.values():
            module.to("cpu")

    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for m in self._loaded.values() for p in m.parameters())

    def clear(self) -> None:
        self._loaded = {}


def redux_line(ref: ReferenceInput, model: ReduxModel) -> str:
    """The metadata value of a Redux reference: Model name [hash], Weight."""
    name = f"{model.name} [{model.hash10}]" if model.hash10 else model.name
    weight = repr(float(ref.weight))
    return f"Module: redux, Model: {name}, Weight: {weight[:-2] if weight.endswith('.0') else weight}"

"""Random-weight Stable Diffusion models for tests and self-checks: tiny (a few MB) or full size.

Tiny models keep the real architecture's shape where it matters to the app: a VAE with the real 8x
downsampling (a 64x64 image is an 8x8 latent), the real CLIP tokenizer and its full 49,408-token
vocabulary, inpainting UNets with 9 input channels, SDXL's two text encoders and addition embedding.
Their configs come from ``engine.architectures.component_configs`` (the bundled real config with tiny
sizes and the family's fixed rules), so a tiny single file, read back through
``single_file_config_dir``, gets exactly the modules the tiny folder has.

Both forms go through the real loaders: a diffusers folder (``save_pretrained``, safetensors) or one
``.safetensors`` file in the original LDM / A1111 layout (``engine.ldm_layout``).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any, Mapping

import torch

from engine import architectures as arch
from engine.ldm_layout import to_original_layout

FAMILIES = arch.FAMILIES
SIZES = ("tiny", "full")

_TINY_TEXT = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 5, "max_position_embeddings": 77,
              "vocab_size": 49408}
# SDXL's second encoder must differ in width from the first: diffusers' single-file loader tells the
# two apart by the width of their position embeddings.
_TINY_TEXT_2 = {"hidden_size": 64, "intermediate_size": 80, "num_hidden_layers": 5, "max_position_embeddings": 77,
                "vocab_size": 49408, "projection_dim": 48}
TINY_VAE = {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "latent_channels": 4,
             "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}
_TINY_ADD_TIME_DIM = 8


def tiny_sizes(family: str) -> dict[str, dict[str, Any]]:
    """The tiny sizes of a make-test-model family, as ``component_configs`` takes them."""
    engine_family, _, _ = arch.TEST_FAMILIES[family]
    unet: dict[str, Any] = {"block_out_channels": [32, 64], "layers_per_block": 2}
    sizes: dict[str, dict[str, Any]] = {"vae": dict(TINY_VAE), "text_encoder": dict(_TINY_TEXT)}
    if engine_family == "sdxl":
        sizes["text_encoder_2"] = dict(_TINY_TEXT_2)
        unet.update(
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
            transformer_layers_per_block=[1, 2],
            cross_attention_dim=_TINY_TEXT["hidden_size"] + _TINY_TEXT_2["hidden_size"],
            addition_time_embed_dim=_TINY_ADD_TIME_DIM,
            projection_class_embeddings_input_dim=6 * _TINY_ADD_TIME_DIM + _TINY_TEXT_2["projection_dim"],
        )
    else:
        unet.update(
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
            transformer_layers_per_block=1,
            cross_attention_dim=_TINY_TEXT["hidden_size"],
        )
    sizes["unet"] = unet
    return sizes


def build_configs(family: str, size: str = "tiny") -> dict[str, dict[str, Any]]:
    """Every component config of a make-test-model family at ``size`` ("tiny" or "full")."""
    if family not in arch.TEST_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    key = arch.family_key(*arch.TEST_FAMILIES[family])
    configs = arch.component_configs(key, tiny_sizes(family) if size == "tiny" else None)
    configs["scheduler"]["prediction_type"] = arch.TEST_FAMILIES[family][2]  # as single_file_config_dir does
    return configs


def pipeline_class(family: str):
    """The diffusers pipeline class of a make-test-model family or config key."""
    import diffusers

    key = family if family in arch.CONFIG_KEYS else arch.family_key(*arch.TEST_FAMILIES[family])
    return getattr(diffusers, arch.bundled_configs(key)["model_index"]["_class_name"])


def build_components(family: str, size: str = "tiny", seed: int = 0) -> dict:
    """Random-weight components (unet, vae, text_encoder(s), tokenizer(s), scheduler) of a family.

    Every parameter is random (norm weights too), seeded by ``seed``, so two runs with one seed give
    equal weights and no two tensors of one shape are alike. ``size="full"`` builds the real
    architecture in float16 (several GB: SD1 ~2 GB, SDXL ~7 GB of memory). Call it on a worker thread.
    """
    import diffusers
    import transformers

    configs = build_configs(family, size)
    engine_family = arch.TEST_FAMILIES[family][0]
    index = configs["model_index"]
    full = size == "full"
    components: dict[str, Any] = {}
    generator = torch.Generator().manual_seed(seed)
    for i, name in enumerate(("unet", "vae", "text_encoder", "text_encoder_2")):
        if name not in configs:
            continue
        library, class_name = index[name]
        cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 100 + i)
            if full:
                module = _empty_module(cls, configs[name])
            else:
                module = _module(cls, configs[name])
        randomize(module, generator, full=full)
        components[name] = module.eval()
    for folder, kind in arch.tokenizer_kinds(engine_family).items():
        components[folder] = tokenizer_for(kind)
    sched_cls = getattr(diffusers, index["scheduler"][1])
    components["scheduler"] = sched_cls.from_config(configs["scheduler"])
    return components


def build_pipeline(family: str, size: str = "tiny", seed: int = 0):
    """A diffusers pipeline around ``build_components`` (no safety checker, no feature extractor)."""
    components = build_components(family, size, seed)
    cls = pipeline_class(family)
    extra: dict[str, Any] = {}
    if arch.TEST_FAMILIES[family][0] != "sdxl":
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipe = cls(**components, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_test_model(
    dest: Path, family: str = "sd15", single_file: bool = False, seed: int = 0, size: str = "tiny"
) -> Path:
    """Write a random-weight model and return its path.

    Folder form (``single_file=False``): ``dest`` becomes a diffusers folder (model_index.json,
    safetensors weights, the bundled CLIP tokenizer files). Single-file form: ``dest`` ending in
    ``.safetensors`` is the file to write; any other ``dest`` is a folder that receives
    ``<family>.safetensors``. The file holds every weight in the original LDM layout;
    ``sd2-v`` files carry ``{"modelspec.prediction_type": "v"}`` metadata, as v-models often do.
    ``size="full"`` writes the real architecture in float16 (2-7 GB; minutes on a small CPU).
    Runs on the calling thread (imports torch, diffusers).
    """
    dest = Path(dest)
    if not single_file and dest.suffix == ".safetensors":
        raise ValueError(f"{dest}: a folder model cannot be named *.safetensors")
    pipe = build_pipeline(family, size, seed)
    engine_family = arch.TEST_FAMILIES[family][0]
    if single_file:
        path = dest if dest.suffix == ".safetensors" else dest / f"{family}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"modelspec.prediction_type": "v"} if family == "sd2-v" else {}
        save_safetensors(path, to_original_layout(pipe.components, engine_family), metadata)
        return path
    pipe.save_pretrained(dest, safe_serialization=True)
    # The diffusers configs as the real repos write them (only the keys the real model sets), exactly
    # what single_file_config_dir writes for the single file: save_pretrained would spell out every
    # default, and diffusers treats explicit and defaulted keys differently when one scheduler is
    # made from another's config (``_use_default_values``).
    configs = build_configs(family, size)
    files = {"unet": "unet/config.json", "vae": "vae/config.json", "scheduler": "scheduler/scheduler_config.json"}
    for name, rel in files.items():
        (dest / rel).write_text(json.dumps(configs[name], indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for folder, kind in arch.tokenizer_kinds(engine_family).items():
        shutil.rmtree(dest / folder, ignore_errors=True)
        arch.write_tokenizer(dest / folder, kind)
    return dest


_DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def save_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Write a .safetensors file tensor by tensor (no second in-memory copy of a multi-GB model).

    The format: 8-byte little-endian header length, a JSON header (dtype, shape, byte offsets per
    tensor, optional ``__metadata__`` of strings) padded to 8 bytes, then the raw little-endian data.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    order = sorted(tensors)
    for key in order:
        t = tensors[key]
        if t.dtype not in _DTYPES:
            raise ValueError(f"{key}: dtype {t.dtype} cannot be stored")
        nbytes = t.numel() * t.element_size()
        header[key] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    tmp = Path(str(path) + ".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for key in order:
            t = tensors[key].detach().cpu().contiguous()
            if t.numel():
                f.write(t.reshape(-1).view(torch.uint8).numpy().data)
    tmp.replace(path)


def _module(cls, config: Mapping[str, Any]):
    if hasattr(cls, "config_class"):  # transformers
        return cls(cls.config_class.from_dict(dict(config)))
    return cls.from_config(dict(config))


def _empty_module(cls, config: Mapping[str, Any]):
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters on "meta": no memory until randomize fills them
        module = _module(cls, config)
    return module.to(torch.float16)


@torch.no_grad()
def randomize(module: torch.nn.Module, generator: torch.Generator, full: bool) -> None:
    """Make every parameter random: tiny models keep their init plus noise; full ones (on "meta")
    get fresh float16 N(0, 0.02) weights, norm scales near 1."""
    for mod in module.modules():
        norm = isinstance(mod, (torch.nn.GroupNorm, torch.nn.LayerNorm))
        for name, param in list(mod.named_parameters(recurse=False)):
            if full:
                data = torch.empty(param.shape, dtype=torch.float32)
                data.normal_(0.0, 0.02, generator=generator)
                if norm and name == "weight":
                    data += 1.0
                setattr(mod, name, torch.nn.Parameter(data.to(torch.float16), requires_grad=False))
            else:
                noise = torch.empty(param.shape, dtype=param.dtype)
                param.add_(noise.normal_(0.0, 0.02, generator=generator))



@torch.no_grad()
def wake(params, generator: torch.Generator) -> None:
    """Give zero-initialised parameters (a control model's output projections) clearly non-zero
    N(0, 0.3) weights, so a tiny random control model visibly changes the image."""
    for param in params:
        param.copy_(torch.empty(param.shape).normal_(0.0, 0.3, generator=generator))


def write_model(model, name: str, dest: Path, layout: str, single_file_state=None) -> Path:
    """Write ``model`` (a diffusers ModelMixin) under ``dest`` as the diffusers folder ``name`` or, for any
    other ``layout``, as ``name.safetensors`` in diffusers' names (``single_file_state``: the state dict
    to store instead, e.g. in the original layout); returns the folder or file."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if layout == "diffusers":
        folder = dest / name
        model.save_pretrained(folder, safe_serialization=True)
        return folder
    path = dest / f"{name}.safetensors"
    state = single_file_state if single_file_state is not None else model.state_dict()
    save_safetensors(path, {k: v.contiguous() for k, v in state.items()})
    return path

def tokenizer_for(kind: str):
    from transformers import CLIPTokenizer

    extra = {"pad_token": "!"} if kind == "clip-pad-bang" else {}
    return CLIPTokenizer.from_pretrained(str(arch.tokenizers_dir() / "clip"), local_files_only=True, **extra)


def write_gguf(tensors: Mapping[str, torch.Tensor], target: Path, arch: str) -> Path:
    """Write ``tensors`` as a GGUF file the way city96's transformer files are (written with the gguf
    package: 2-D ``.weight``s whose rows fill Q8_0 blocks quantized to Q8_0, the rest, learned tokens
    such as Z-Image's pad tokens included, F32); returns ``target``."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(target), arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, tensor in tensors.items():
        data = tensor.float().numpy()
        if data.ndim == 2 and data.shape[-1] % 32 == 0 and name.endswith(".weight"):
            writer.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(target)

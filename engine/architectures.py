"""Model architectures as diffusers configs: the bundled real configs, resized to a checkpoint's shapes.

A single-file checkpoint (original LDM / A1111 / ComfyUI layout) carries weights but no config.
diffusers' ``from_single_file`` needs a diffusers-format config folder; left to itself it fetches one
from the Hub. ``single_file_config_dir`` writes that folder offline instead: it starts from the bundled
config of the real model of that family (``resources/configs/<key>/``) and overrides every size the
tensor shapes tell (channels, depths, attention placement, widths, vocabulary ...). What shapes cannot
tell follows one fixed rule per family, the same rule ``engine.testmodels`` uses to build tiny models:

* UNet attention heads: SD1 ``attention_head_dim = 8`` (diffusers' name for 8 heads) everywhere;
  SD2 and SDXL 64 channels per head, ``attention_head_dim[i] = max(1, block_out_channels[i] // 64)``.
* Text encoders: ``num_attention_heads = max(1, hidden_size // 64)``; ``hidden_act`` "quick_gelu" for
  CLIP-L (SD1, SDXL's first encoder), "gelu" for OpenCLIP (SD2, SDXL's second encoder).
* Group norms 32, VAE scaling factor, sample sizes, scheduler and everything else: the family's.

So a real full-size checkpoint gets exactly the bundled real config, and a tiny test checkpoint gets
exactly the config it was built from. Nothing here touches the network; torch is not imported.

Names. Engine families are "sd1", "sd2", "sdxl" (``ModelInfo.family``). Config keys name the bundled
folders: "sd1", "sd1-inpaint", "sd2-base" (SD 2.x 512 epsilon), "sd2-v" (768 v-prediction),
"sd2-inpaint", "sdxl", "sdxl-inpaint". ``FAMILIES`` are the names ``make-test-model`` accepts.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import struct
from pathlib import Path
from typing import Any, Mapping

from engine.files.safe import read_json
from engine.paths import resources_dir

FAMILIES = ("sd15", "sd15-inpaint", "sd2-v", "sd2-inpaint", "sdxl", "sdxl-inpaint")
CONFIG_KEYS = ("sd1", "sd1-inpaint", "sd2-base", "sd2-v", "sd2-inpaint", "sdxl", "sdxl-inpaint")

# make-test-model name -> (engine family, inpaint, prediction type)
TEST_FAMILIES: dict[str, tuple[str, bool, str]] = {
    "sd15": ("sd1", False, "epsilon"),
    "sd15-inpaint": ("sd1", True, "epsilon"),
    "sd2-v": ("sd2", False, "v_prediction"),
    "sd2-inpaint": ("sd2", True, "epsilon"),
    "sdxl": ("sdxl", False, "epsilon"),
    "sdxl-inpaint": ("sdxl", True, "epsilon"),
}

# Key prefixes of the original single-file layout.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = {"sd1": "cond_stage_model.transformer.", "sdxl": "conditioner.embedders.0.transformer."}
OPEN_CLIP_PREFIX = {"sd2": "cond_stage_model.model.", "sdxl": "conditioner.embedders.1.model."}

# diffusers drops resblock 23 of an SD2 text encoder: SD2 conditions on the penultimate layer of the
# 24-layer OpenCLIP ViT-H, so the diffusers model has 23 layers (see SD_2_TEXT_ENCODER_KEYS_TO_IGNORE).
_SD2_UNUSED_RESBLOCK = 23

# Text encoders per engine family: (component name, kind, tokenizer folder).
_TEXT_ENCODERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "sd1": (("text_encoder", "clip-l", "clip"),),
    "sd2": (("text_encoder", "open-clip", "clip-pad-bang"),),
    "sdxl": (("text_encoder", "clip-l", "clip"), ("text_encoder_2", "open-clip", "clip-pad-bang")),
}
_TOKENIZER_FOR = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def engine_family(key: str) -> str:
    """"sd1" | "sd2" | "sdxl" for a config key, a make-test-model name or an engine family."""
    if key in TEST_FAMILIES:
        return TEST_FAMILIES[key][0]
    base = key.split("-", 1)[0]
    if base in ("sd1", "sd15"):
        return "sd1"
    if base in ("sd2", "sdxl"):
        return base
    raise ValueError(f"unknown model family {key!r}")


def family_key(family: str, inpaint: bool, prediction_type: str) -> str:
    """The bundled config folder (``resources/configs/<key>``) for an engine family.

    ``family`` is "sd1", "sd2" or "sdxl". SD2 has three real variants: inpainting (512, epsilon),
    768 v-prediction, and the 512 epsilon base model. SD1 and SDXL v-prediction fine-tunes use their
    family's folder; ``single_file_config_dir`` sets the scheduler's prediction type either way.
    """
    if family not in _TEXT_ENCODERS:
        raise ValueError(f"unknown model family {family!r} (expected sd1, sd2 or sdxl)")
    if inpaint:
        return f"{family}-inpaint"
    if family == "sd2":
        return "sd2-v" if prediction_type == "v_prediction" else "sd2-base"
    return family


def _config_key(name: str) -> str:
    if name in CONFIG_KEYS:
        return name
    if name in TEST_FAMILIES:
        return family_key(*TEST_FAMILIES[name])
    if name == "sd2":  # the engine family alone: SD 2.x's flagship is the 768 v model
        return "sd2-v"
    if name in _TEXT_ENCODERS:
        return name
    raise ValueError(f"unknown model family {name!r}")


def native_size(family: str) -> int:
    """Native image side in pixels: 512 SD1, 768 SD2 v ("sd2", "sd2-v"), 512 SD2 base and inpainting,
    1024 SDXL. Accepts a config key, a make-test-model name or an engine family."""
    key = _config_key(family)
    return int(bundled_configs(key)["unet"]["sample_size"]) * 8


# --------------------------------------------------------------------------------------------
# Bundled configs and tokenizers
# --------------------------------------------------------------------------------------------


def configs_dir() -> Path:
    return resources_dir() / "configs"


def tokenizers_dir() -> Path:
    return resources_dir() / "tokenizers"


def bundled_configs(key: str) -> dict[str, dict[str, Any]]:
    """The real model's configs for a config key: {"model_index", "unet", "vae", "text_encoder",
    ["text_encoder_2"], "scheduler"} -> dict (fresh copies)."""
    folder = configs_dir() / key
    if key not in CONFIG_KEYS or not folder.is_dir():
        raise ValueError(f"no bundled config for {key!r}")
    out = {"model_index": _read_json(folder / "model_index.json")}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = "scheduler_config.json" if sub.name == "scheduler" else "config.json"
        out[sub.name] = _read_json(sub / name)
    return out


def write_tokenizer(dest: Path, kind: str) -> Path:
    """Write a loadable CLIPTokenizer folder: kind "clip" (pad <|endoftext|>: CLIP-L) or
    "clip-pad-bang" (pad "!": the OpenCLIP tokenizers). vocab.json and merges.txt are stored once,
    in resources/tokenizers/clip/."""
    if kind not in ("clip", "clip-pad-bang"):
        raise ValueError(f"unknown tokenizer {kind!r}")
    dest.mkdir(parents=True, exist_ok=True)
    root = tokenizers_dir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(root / "clip" / name, dest / name)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(root / kind / name, dest / name)
    return dest


def tokenizer_kinds(family: str) -> dict[str, str]:
    """{"tokenizer": kind, ["tokenizer_2": kind]} for an engine family (kinds as in write_tokenizer)."""
    return {_TOKENIZER_FOR[name]: tok for name, _, tok in _TEXT_ENCODERS[engine_family(family)]}


# --------------------------------------------------------------------------------------------
# Configs from sizes (one rule set, used for single files and for test models)
# --------------------------------------------------------------------------------------------


def component_configs(key: str, sizes: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The bundled configs of ``key`` with ``sizes`` ({component: {config field: value}}) applied,
    then the family's fixed rules (attention heads, activations, norm groups) recomputed from the
    resulting sizes. With no sizes this is the real full-size architecture."""
    family = engine_family(key)
    configs = bundled_configs(key)
    for component, values in (sizes or {}).items():
        if component not in configs:
            raise ValueError(f"{key} has no component {component!r}")
        configs[component].update(copy.deepcopy(dict(values)))

    unet = configs["unet"]
    unet["norm_num_groups"] = 32
    if family == "sd1":
        unet["attention_head_dim"] = 8
    else:
        unet["attention_head_dim"] = [max(1, c // 64) for c in unet["block_out_channels"]]
    configs["vae"]["norm_num_groups"] = 32
    for name, kind, _ in _TEXT_ENCODERS[family]:
        te = configs[name]
        te["num_attention_heads"] = max(1, te["hidden_size"] // 64)
        te["hidden_act"] = "quick_gelu" if kind == "clip-l" else "gelu"
    return configs


def sizes_from_shapes(family: str, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, dict[str, Any]]:
    """Every config size readable from an original-layout checkpoint's tensor shapes.

    ``family`` is the engine family ("sd1", "sd2", "sdxl"). A component whose tensors are absent is
    left out (its config stays the family's; loading it will then fail in diffusers, as it should).
    Raises ValueError for a layout these rules cannot describe.
    """
    family = engine_family(family)
    shapes = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    sizes: dict[str, dict[str, Any]] = {}
    projection_dim = None
    for name, kind, _ in _TEXT_ENCODERS[family]:
        if kind == "clip-l":
            te = _clip_l_sizes(shapes, CLIP_L_PREFIX[family] + "text_model.")
        else:
            te = _open_clip_sizes(shapes, OPEN_CLIP_PREFIX[family], family)
        if te:
            sizes[name] = te
            projection_dim = te.get("projection_dim", projection_dim)
    unet = _unet_sizes(shapes, family, projection_dim)
    if unet:
        sizes["unet"] = unet
    vae = _vae_sizes(shapes)
    if vae:
        sizes["vae"] = vae
    return sizes


def single_file_config_dir(
    family: str,
    inpaint: bool,
    prediction_type: str,
    shapes: dict[str, tuple[int, ...]],
    dest: Path,
) -> Path:
    """Write a diffusers config folder for loading one single-file checkpoint offline; return ``dest``.

    ``family`` "sd1" | "sd2" | "sdxl", ``prediction_type`` "epsilon" | "v_prediction" (written into the
    scheduler config), ``shapes`` the checkpoint's tensor shapes by key (original layout). ``dest`` gets
    model_index.json, unet/ vae/ text_encoder/ [text_encoder_2/] config.json, tokenizer/ [tokenizer_2/]
    (full CLIP vocabulary) and scheduler/scheduler_config.json, and no weights. Use it as
    ``Pipeline.from_single_file(path, config=str(dest), local_files_only=True)``: diffusers then reads
    only this folder (configs, tokenizer files) and the checkpoint. Runs on any thread; no torch.
    """
    family = engine_family(family)
    key = family_key(family, inpaint, prediction_type)
    configs = component_configs(key, sizes_from_shapes(family, shapes))
    configs["scheduler"]["prediction_type"] = prediction_type
    return write_config_dir(family, configs, Path(dest))


def write_config_dir(family: str, configs: Mapping[str, Mapping[str, Any]], dest: Path) -> Path:
    """Write ``configs`` (as from component_configs) and the family's tokenizers as a diffusers folder."""
    write_configs(configs, dest)
    for folder, kind in tokenizer_kinds(family).items():
        write_tokenizer(dest / folder, kind)
    return dest


def write_configs(configs: Mapping[str, Mapping[str, Any]], dest: Path) -> Path:
    """Write a diffusers folder's configs (no weights, no tokenizers): ``model_index``, the
    scheduler's and one ``config.json`` per part; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, cfg in configs.items():
        if name == "model_index":
            path = dest / "model_index.json"
        elif name == "scheduler":
            path = dest / "scheduler" / "scheduler_config.json"
        else:
            path = dest / name / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return dest


def safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a .safetensors header (reads the header only, never the weights)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100_000_000:
            raise ValueError(f"{path}: implausible safetensors header ({length} bytes)")
        header = json.loads(f.read(length))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


# --------------------------------------------------------------------------------------------
# Shape readers
# --------------------------------------------------------------------------------------------


def _indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _depth(s: Mapping[str, tuple[int, ...]], block: str) -> int:
    """Transformer blocks in one attention block (``input_blocks.4.1`` ...); 0 without attention."""
    if f"{block}.proj_in.weight" not in s:
        return 0
    return len(_indices(s, re.escape(block) + r"\.transformer_blocks\.(\d+)\."))


def _unet_sizes(shapes: Mapping[str, tuple[int, ...]], family: str, projection_dim: int | None) -> dict[str, Any]:
    s = {k[len(UNET_PREFIX):]: v for k, v in shapes.items() if k.startswith(UNET_PREFIX)}
    if "input_blocks.0.0.weight" not in s:
        return {}
    n_in = len(_indices(s, r"input_blocks\.(\d+)\."))
    downsamplers = [i for i in range(n_in) if f"input_blocks.{i}.0.op.weight" in s]
    levels = len(downsamplers) + 1
    per_level = (n_in - 1 - len(downsamplers)) / levels
    if per_level != int(per_level) or per_level < 1:
        raise ValueError("UNet input blocks do not form equal levels")
    lpb = int(per_level)
    if downsamplers != [(lv + 1) * (lpb + 1) for lv in range(levels - 1)]:
        raise ValueError("UNet downsamplers are not where the standard layout puts them")

    block_out, down_depth = [], []
    for lv in range(levels):
        first = 1 + lv * (lpb + 1)
        block_out.append(s[f"input_blocks.{first}.0.out_layers.3.weight"][0])
        depths = {_depth(s, f"input_blocks.{first + j}.1") for j in range(lpb)}
        if len(depths) != 1:
            raise ValueError("UNet level mixes blocks with and without attention")
        down_depth.append(depths.pop())
    up_depth = []
    for lv in range(levels):
        depths = {_depth(s, f"output_blocks.{lv * (lpb + 1) + j}.1") for j in range(lpb + 1)}
        if len(depths) != 1:
            raise ValueError("UNet up level mixes blocks with and without attention")
        up_depth.append(depths.pop())
    if up_depth != down_depth[::-1]:
        raise ValueError("asymmetric UNet (up and down attention differ) is not supported")
    mid_depth = _depth(s, "middle_block.1")

    attn = next(
        (f"input_blocks.{1 + lv * (lpb + 1)}.1" for lv in range(levels) if down_depth[lv]),
        "middle_block.1" if mid_depth else None,
    )
    depths = [d or 1 for d in down_depth]
    if mid_depth and mid_depth != depths[-1]:
        raise ValueError("UNet middle block depth differs from the last level's")
    out: dict[str, Any] = {
        "in_channels": s["input_blocks.0.0.weight"][1],
        "out_channels": s["out.2.weight"][0],
        "block_out_channels": block_out,
        "layers_per_block": lpb,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in down_depth],
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in up_depth],
        "mid_block_type": "UNetMidBlock2DCrossAttn" if mid_depth else "UNetMidBlock2D",
        "transformer_layers_per_block": depths[0] if len(set(depths)) == 1 else depths,
    }
    if attn:
        out["cross_attention_dim"] = s[f"{attn}.transformer_blocks.0.attn2.to_k.weight"][1]
        out["use_linear_projection"] = len(s[f"{attn}.proj_in.weight"]) == 2
    if family == "sdxl" and "label_emb.0.0.weight" in s:
        in_dim = s["label_emb.0.0.weight"][1]
        out["addition_embed_type"] = "text_time"
        out["projection_class_embeddings_input_dim"] = in_dim
        if projection_dim is not None:  # in = 6 size/crop/target numbers x time-embed dim + pooled text
            if (in_dim - projection_dim) % 6:
                raise ValueError("SDXL addition embedding does not match the text projection")
            out["addition_time_embed_dim"] = (in_dim - projection_dim) // 6
    return out


def _vae_sizes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    s = {k[len(VAE_PREFIX):]: v for k, v in shapes.items() if k.startswith(VAE_PREFIX)}
    if "encoder.conv_in.weight" not in s:
        return {}
    levels = _indices(s, r"encoder\.down\.(\d+)\.")
    n = len(levels)
    return {
        "in_channels": s["encoder.conv_in.weight"][1],
        "out_channels": s["decoder.conv_out.weight"][0],
        "latent_channels": s["decoder.conv_in.weight"][1],
        "block_out_channels": [s[f"encoder.down.{i}.block.0.conv1.weight"][0] for i in levels],
        "layers_per_block": len(_indices(s, r"encoder\.down\.0\.block\.(\d+)\.")),
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "mid_block_add_attention": "encoder.mid.attn_1.q.weight" in s,
        "use_quant_conv": "quant_conv.weight" in s,
        "use_post_quant_conv": "post_quant_conv.weight" in s,
    }


def _clip_l_sizes(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> dict[str, Any]:
    s = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    if "embeddings.token_embedding.weight" not in s:
        return {}
    vocab, hidden = s["embeddings.token_embedding.weight"]
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": s["embeddings.position_embedding.weight"][0],
        "num_hidden_layers": len(_indices(s, r"encoder\.layers\.(\d+)\.")),
        "intermediate_size": s["encoder.layers.0.mlp.fc1.weight"][0],
    }


def _open_clip_sizes(shapes: Mapping[str, tuple[int, ...]], prefix: str, family: str) -> dict[str, Any]:
    s = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    if "token_embedding.weight" not in s:
        return {}
    vocab, hidden = s["token_embedding.weight"]
    layers = _indices(s, r"transformer\.resblocks\.(\d+)\.")
    if family == "sd2":
        layers = [i for i in layers if i != _SD2_UNUSED_RESBLOCK]
    out = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": s["positional_embedding"][0],
        "num_hidden_layers": len(layers),
        "intermediate_size": s["transformer.resblocks.0.mlp.c_fc.weight"][0],
    }
    # Only SDXL's second encoder uses its projection (pooled output); SD2 carries one diffusers ignores.
    if family == "sdxl" and "text_projection" in s:
        out["projection_dim"] = s["text_projection"][1]
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path)  # regular files of sane size only (engine.files.safe)

"""The bundled real SD 3.5 configs (``resources/configs/sd3.5-large`` and ``sd3.5-medium``) and the
config folder a single file loads with: those configs resized to the file's tensor shapes, so
``from_single_file`` never fetches anything. Stdlib (and file headers); any thread.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.architectures import write_configs
from engine.paths import resources_dir

VARIANT_KEYS = ("large", "medium")
_PREFIX = "model.diffusion_model."


def folder(key: str) -> Path:
    return resources_dir() / "configs" / f"sd3.5-{key}"


def bundled(key: str) -> dict[str, dict]:
    """{"model_index", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3",
    "scheduler"} -> the real model's config (fresh copies)."""
    if key not in VARIANT_KEYS:
        raise ValueError(f"no bundled SD 3.5 config for {key!r}")
    root = folder(key)
    out = {"model_index": json.loads((root / "model_index.json").read_text(encoding="utf-8"))}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        name = "scheduler_config.json" if sub.name == "scheduler" else "config.json"
        out[sub.name] = json.loads((sub / name).read_text(encoding="utf-8"))
    return out


def _indices(names, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in names if (m := rx.match(k))})


def transformer_sizes(shapes: dict) -> dict:
    """SD3Transformer2DModel config fields from the original-layout transformer tensor shapes
    (``model.diffusion_model.`` prefix optional), as diffusers' own converter reads them."""
    s = {k.removeprefix(_PREFIX): v for k, v in shapes.items()}
    layers = _indices(s, r"joint_blocks\.(\d+)\.")
    patch_w = s["x_embedder.proj.weight"]  # (inner, in_channels, patch, patch)
    inner = s["context_embedder.weight"][0]
    qk = s.get("joint_blocks.0.x_block.attn.ln_q.weight")
    head_dim = qk[0] if qk else 64  # SD 3.0 has no q/k norm; its heads are 64 wide, as all SD3 models'
    patch = patch_w[2]
    return {
        "num_layers": len(layers),
        "in_channels": patch_w[1],
        "patch_size": patch,
        "out_channels": s["final_layer.linear.weight"][0] // (patch * patch),
        "caption_projection_dim": inner,
        "attention_head_dim": head_dim,
        "num_attention_heads": inner // head_dim,
        "joint_attention_dim": s["context_embedder.weight"][1],
        "pooled_projection_dim": s["y_embedder.mlp.0.weight"][1],
        "pos_embed_max_size": round(s["pos_embed"][1] ** 0.5),
        "dual_attention_layers": _indices(s, r"joint_blocks\.(\d+)\.x_block\.attn2\."),
        "qk_norm": "rms_norm" if qk else None,
    }


def variant_of(shapes: dict) -> str:
    """"medium" (MMDiT-X: dual attention layers), "sd3-medium" (SD 3.0: no q/k norm) or "large" for an
    original-layout transformer."""
    if any(".x_block.attn2." in k for k in shapes):
        return "medium"
    return "large" if any(".attn.ln_q." in k for k in shapes) else "sd3-medium"


def _vae_sizes(shapes: dict) -> dict:
    s = {k.removeprefix("first_stage_model."): v for k, v in shapes.items() if k.startswith("first_stage_model.")}
    blocks = _indices(s, r"encoder\.down\.(\d+)\.")
    return {
        "block_out_channels": [s[f"encoder.down.{i}.block.0.conv1.weight"][0] for i in blocks],
        "layers_per_block": len(_indices(s, r"encoder\.down\.0\.block\.(\d+)\.")),
        "latent_channels": s["decoder.conv_in.weight"][1],
        "down_block_types": ["DownEncoderBlock2D"] * len(blocks),
        "up_block_types": ["UpDecoderBlock2D"] * len(blocks),
    }


def _heads(width: int) -> int:
    # Every released CLIP has 64-wide heads; narrower encoders are test models, built with 4 heads.
    return width // 64 if width >= 64 and width % 64 == 0 else 4


def clip_sizes(shapes: dict, prefix: str) -> dict:
    s = {k[len(prefix):].removeprefix("text_model."): v for k, v in shapes.items() if k.startswith(prefix)}
    vocab, hidden = s["embeddings.token_embedding.weight"]
    out = {
        "vocab_size": vocab, "hidden_size": hidden, "num_attention_heads": _heads(hidden),
        "max_position_embeddings": s["embeddings.position_embedding.weight"][0],
        "num_hidden_layers": len(_indices(s, r"encoder\.layers\.(\d+)\.")),
        "intermediate_size": s["encoder.layers.0.mlp.fc1.weight"][0],
        "projection_dim": s["text_projection.weight"][0] if "text_projection.weight" in s else hidden,
    }
    return out


def t5_sizes(shapes: dict, prefix: str) -> dict:
    s = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    vocab, width = s["shared.weight"]
    buckets, heads = s["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    return {
        "vocab_size": vocab, "d_model": width, "num_heads": heads, "relative_attention_num_buckets": buckets,
        "d_kv": s["encoder.block.0.layer.0.SelfAttention.q.weight"][0] // heads,
        "d_ff": s["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0],
        "num_layers": len(_indices(s, r"encoder\.block\.(\d+)\.")),
    }


CLIP_L = "text_encoders.clip_l.transformer."
CLIP_G = "text_encoders.clip_g.transformer."
T5 = "text_encoders.t5xxl.transformer."


def has_t5(shapes: dict) -> bool:
    return f"{T5}shared.weight" in shapes


def file_shapes(path: str) -> dict:
    """The tensor shapes of an SD 3.5 file (safetensors or GGUF) from its header."""
    from engine.files.headers import read_gguf_header, read_header, sniff

    return (read_gguf_header(path) if sniff(path) == "gguf" else read_header(path)).shapes()


def all_in_one(shapes: dict) -> bool:
    """Whether a file holds the whole model (transformer, both CLIPs, the VAE; T5 optional): else it is a
    transformer of the split layout (perhaps with its VAE, as Stability's own files), its encoders elsewhere."""
    return all(any(k.startswith(prefix) for k in shapes) for prefix in (CLIP_L, CLIP_G, "first_stage_model."))


def single_file_config_dir(shapes: dict, dest: Path) -> Path:
    """Write the diffusers config folder (no weights, no tokenizers) for an all-in-one SD 3.5 file
    with these tensor shapes; returns ``dest``. The variant's real configs, resized."""
    configs = bundled("large" if variant_of(shapes) == "large" else "medium")
    configs["transformer"].update(transformer_sizes(shapes))
    configs["vae"].update(_vae_sizes(shapes))
    configs["text_encoder"].update(clip_sizes(shapes, CLIP_L))
    configs["text_encoder_2"].update(clip_sizes(shapes, CLIP_G))
    if has_t5(shapes):
        configs["text_encoder_3"].update(t5_sizes(shapes, T5))
    return write_configs(configs, dest)


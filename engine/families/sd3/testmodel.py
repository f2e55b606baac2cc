"""Tiny random-weight Stable Diffusion 3.5 models, built locally from the bundled real configs
(``resources/configs/sd3.5-*``) with tiny widths: the MMDiT (Large) or MMDiT-X (Medium, dual
attention in its first layers) transformer, the two CLIP text encoders with projection, the tiny T5
(``engine.testencoders``) and a 16-channel VAE that keeps the real 8x downsampling. A few MB.
Calling thread (imports torch, diffusers).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.families.sd3 import configs

CLIP_WIDTH = 32  # CLIP-L
CLIP_G_WIDTH = 48  # wider than CLIP-L, as 1280 is to 768 (single-file loading tells them apart by width)
T5_WIDTH = 96  # = the transformer's joint_attention_dim (the CLIP features, 32 + 48, are zero-padded to it)

# make-test-model name -> (variant config key, what it is, whether it has T5)
TEST_MODELS = {
    "sd35-medium": ("medium", "SD 3.5 Medium (MMDiT-X)", True),
    "sd35-large": ("large", "SD 3.5 Large (MMDiT)", True),
    "sd35-large-turbo": ("large", "SD 3.5 Large Turbo", True),
    "sd35-medium-no-t5": ("medium", "SD 3.5 Medium without its T5 encoder", False),
}


def build_pipeline(name: str, seed: int = 0):
    """The tiny StableDiffusion3Pipeline ``name`` (a TEST_MODELS key), seeded."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    from engine.testencoders import clip_encoder, clip_tokenizer, t5_encoder, t5_tokenizer
    from engine.testmodels import randomize, tokenizer_for

    key, _what, with_t5 = TEST_MODELS[name]
    real = configs.bundled(key)
    transformer_config = {k: v for k, v in real["transformer"].items() if not k.startswith("_")}
    layers = 2
    transformer_config.update(
        num_layers=layers, attention_head_dim=8, num_attention_heads=2, caption_projection_dim=16,
        joint_attention_dim=T5_WIDTH, pooled_projection_dim=CLIP_WIDTH + CLIP_G_WIDTH, pos_embed_max_size=32, sample_size=8,
        dual_attention_layers=(0,) if transformer_config.get("dual_attention_layers") else (),
    )
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(**transformer_config)
    vae_config = {k: v for k, v in real["vae"].items() if not k.startswith("_")}
    # 32 channels: the real GroupNorm of 32 groups (a single file's shapes cannot say the group count)
    vae_config.update(block_out_channels=[32, 32, 32, 32], layers_per_block=1, sample_size=64)
    vae = AutoencoderKL(**vae_config)
    clip_l = clip_encoder(seed + 1, CLIP_WIDTH, projection_dim=CLIP_WIDTH, layers=2)
    tokenizer_3 = t5_tokenizer()
    text_encoder_3 = t5_encoder(seed + 3, len(tokenizer_3), width=T5_WIDTH) if with_t5 else None
    parts = dict(
        transformer=transformer.eval(), vae=vae.eval(),
        text_encoder=clip_l,
        text_encoder_2=clip_encoder(seed + 2, CLIP_G_WIDTH, projection_dim=CLIP_G_WIDTH, layers=2, hidden_act="gelu"),
        text_encoder_3=text_encoder_3, tokenizer=clip_tokenizer(), tokenizer_2=tokenizer_for("clip-pad-bang"),
        tokenizer_3=tokenizer_3 if with_t5 else None,
        scheduler=FlowMatchEulerDiscreteScheduler(**{k: v for k, v in real["scheduler"].items()
                                                     if not k.startswith("_")}),
    )
    generator = torch.Generator().manual_seed(seed)
    for module in parts.values():
        if isinstance(module, torch.nn.Module):
            randomize(module, generator, full=False)
    with torch.no_grad():  # SD3 single files load CLIP-L with an identity projection (diffusers does so)
        clip_l.text_projection.weight.copy_(torch.eye(CLIP_WIDTH))
    return StableDiffusion3Pipeline(**parts)


def make_sd3_test_model(dest: Path, name: str = "sd35-medium", layout: str = "diffusers", seed: int = 0) -> Path:
    """Write the tiny SD 3.5 model ``name`` to ``dest``: a diffusers folder, or (``layout``
    "single-file") one all-in-one ``.safetensors`` in ComfyUI / Stability's layout (``dest`` ending
    in .safetensors is the file; otherwise a folder receiving ``<name>.safetensors``), with the T5
    tokenizer beside it as ``t5xxl_tokenizer/`` (single files carry no tokenizer); or (``layout``
    "comfyui" / "gguf") ComfyUI's split layout under ``dest`` (``_write_comfyui``), returning the
    transformer file to pick."""
    pipe = build_pipeline(name, seed)
    dest = Path(dest)
    turbo = name.endswith("turbo")
    if layout in ("comfyui", "gguf"):
        return _write_comfyui(pipe, dest, name, gguf=layout == "gguf")
    if layout == "single-file":
        path = dest if dest.suffix == ".safetensors" else dest / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"modelspec.title": "Stable Diffusion 3.5 Large Turbo"} if turbo else {}
        from engine.testmodels import save_safetensors

        save_safetensors(path, original_layout(pipe), metadata)
        if pipe.text_encoder_3 is not None:
            pipe.tokenizer_3.save_pretrained(str(path.parent / "t5xxl_tokenizer"))
        return path
    if dest.suffix == ".safetensors":
        raise ValueError(f"{dest}: a folder model cannot be named *.safetensors")
    pipe.save_pretrained(dest, safe_serialization=True)
    index_path = dest / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    if turbo:  # the real repo's name, as an HF snapshot or a clone keeps it
        index["_name_or_path"] = "stabilityai/stable-diffusion-3.5-large-turbo"
        index_path.write_text(json.dumps(index, indent=2), encoding="utf-8")
    return dest


def _swap_halves(t):
    import torch

    shift, scale = t.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def _transformer_original(sd: dict, layers: int) -> dict:
    """diffusers SD3Transformer2DModel weights -> Stability's original MMDiT names (the inverse of
    diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers``)."""
    import torch

    sd = dict(sd)
    out = {"pos_embed": sd.pop("pos_embed.pos_embed"), "x_embedder.proj.weight": sd.pop("pos_embed.proj.weight"),
           "x_embedder.proj.bias": sd.pop("pos_embed.proj.bias")}
    renames = {
        "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
        "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
        "context_embedder": "context_embedder", "proj_out": "final_layer.linear",
    }
    for new, old in renames.items():
        for p in ("weight", "bias"):
            out[f"{old}.{p}"] = sd.pop(f"{new}.{p}")
    for p in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{p}"] = _swap_halves(sd.pop(f"norm_out.linear.{p}"))
    for i in range(layers):
        b, j = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        last = i == layers - 1
        for p in ("weight", "bias"):
            out[f"{j}x_block.attn.qkv.{p}"] = torch.cat([sd.pop(f"{b}attn.to_{x}.{p}") for x in "qkv"])
            out[f"{j}context_block.attn.qkv.{p}"] = torch.cat([sd.pop(f"{b}attn.add_{x}_proj.{p}") for x in "qkv"])
            out[f"{j}x_block.attn.proj.{p}"] = sd.pop(f"{b}attn.to_out.0.{p}")
            out[f"{j}x_block.adaLN_modulation.1.{p}"] = sd.pop(f"{b}norm1.linear.{p}")
            ctx = sd.pop(f"{b}norm1_context.linear.{p}")
            out[f"{j}context_block.adaLN_modulation.1.{p}"] = _swap_halves(ctx) if last else ctx
            out[f"{j}x_block.mlp.fc1.{p}"] = sd.pop(f"{b}ff.net.0.proj.{p}")
            out[f"{j}x_block.mlp.fc2.{p}"] = sd.pop(f"{b}ff.net.2.{p}")
            if not last:
                out[f"{j}context_block.attn.proj.{p}"] = sd.pop(f"{b}attn.to_add_out.{p}")
                out[f"{j}context_block.mlp.fc1.{p}"] = sd.pop(f"{b}ff_context.net.0.proj.{p}")
                out[f"{j}context_block.mlp.fc2.{p}"] = sd.pop(f"{b}ff_context.net.2.{p}")
            if f"{b}attn2.to_q.{p}" in sd:
                out[f"{j}x_block.attn2.qkv.{p}"] = torch.cat([sd.pop(f"{b}attn2.to_{x}.{p}") for x in "qkv"])
                out[f"{j}x_block.attn2.proj.{p}"] = sd.pop(f"{b}attn2.to_out.0.{p}")
        for new, old in (("norm_q", "x_block.attn.ln_q"), ("norm_k", "x_block.attn.ln_k"),
                         ("norm_added_q", "context_block.attn.ln_q"), ("norm_added_k", "context_block.attn.ln_k")):
            if f"{b}attn.{new}.weight" in sd:
                out[f"{j}{old}.weight"] = sd.pop(f"{b}attn.{new}.weight")
        for new, old in (("norm_q", "ln_q"), ("norm_k", "ln_k")):
            if f"{b}attn2.{new}.weight" in sd:
                out[f"{j}x_block.attn2.{old}.weight"] = sd.pop(f"{b}attn2.{new}.weight")
    if sd:
        raise ValueError(f"transformer weights with no original name: {sorted(sd)[:5]}")
    return out


def original_layout(pipe) -> dict:
    """Every weight of a tiny SD 3.5 pipeline as an all-in-one file names it (ComfyUI / Stability):
    ``model.diffusion_model.`` (MMDiT), ``text_encoders.clip_l|clip_g|t5xxl.transformer.`` (the
    transformers names) and ``first_stage_model.`` (the LDM VAE layout)."""
    from engine.ldm_layout import vae_to_original

    out = {}
    transformer = _transformer_original(pipe.transformer.state_dict(), pipe.transformer.config.num_layers)
    out.update({f"model.diffusion_model.{k}": v for k, v in transformer.items()})
    out.update({f"first_stage_model.{k}": v for k, v in vae_to_original(pipe.vae.state_dict()).items()})
    for prefix, module in ((configs.CLIP_L, pipe.text_encoder), (configs.CLIP_G, pipe.text_encoder_2),
                           (configs.T5, pipe.text_encoder_3)):
        if module is not None:
            out.update({prefix + k: v for k, v in module.state_dict().items() if not k.endswith("position_ids")})
    return {k: v.detach().clone().contiguous() for k, v in out.items()}  # tied T5 embeddings: one copy each


# ComfyUI's names for each model's transformer file (Stability's: sd3.5_large.safetensors …)
COMFY_NAMES = {"sd35-medium": "sd3.5_medium-tiny", "sd35-large": "sd3.5_large-tiny",
               "sd35-large-turbo": "sd3.5_large_turbo-tiny", "sd35-medium-no-t5": "sd3.5_medium-tiny"}


def _write_comfyui(pipe, dest: Path, name: str, gguf: bool = False) -> Path:
    """The tiny pipeline as ComfyUI's split layout under ``dest`` (a ComfyUI install):
    ``models/diffusion_models/sd3.5_<variant>-tiny.safetensors`` (the MMDiT alone, original names under
    ComfyUI's prefix; with ``gguf`` a Q8_0 ``.gguf``), ``models/text_encoders/clip_l.safetensors``,
    ``clip_g.safetensors`` and (when the model has T5) ``t5xxl_fp16.safetensors``, ``models/vae/sd3.5_vae.safetensors``
    (the LDM layout) and the T5 tokenizer where ComfyUI keeps its own (``comfy/text_encoders/t5_tokenizer``)."""
    from safetensors.torch import save_file

    from engine.testmodels import write_gguf

    models = dest / "models"
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    weights = original_layout(pipe)

    def part(prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}

    stem = COMFY_NAMES[name]
    if gguf:
        target = write_gguf(part("model.diffusion_model."), models / "diffusion_models" / f"{stem}-Q8_0.gguf",
                            arch="sd3")
    else:
        target = models / "diffusion_models" / f"{stem}.safetensors"
        save_file({k: v for k, v in weights.items() if k.startswith("model.diffusion_model.")}, str(target))
    for prefix, file in ((configs.CLIP_L, "clip_l"), (configs.CLIP_G, "clip_g"), (configs.T5, "t5xxl_fp16")):
        tensors = part(prefix)
        if tensors:
            save_file(tensors, str(models / "text_encoders" / f"{file}.safetensors"))
    save_file(part("first_stage_model."), str(models / "vae" / "sd3.5_vae.safetensors"))
    if pipe.text_encoder_3 is not None:
        pipe.tokenizer_3.save_pretrained(str(dest / "comfy" / "text_encoders" / "t5_tokenizer"))
    return target

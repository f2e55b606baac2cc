"""Tiny random-weight FLUX.1 models, built locally from the bundled real configs
(``resources/configs/flux1-dev|schnell``) with tiny dimensions: a 1 + 1 block FluxTransformer2DModel,
the shared tiny T5 and CLIP-L (``engine.testencoders``) and a 16-channel AutoencoderKL with the real
8x depth. Tests and demos; calling thread (imports torch, diffusers).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.paths import resources_dir

WIDTH = 32  # T5 and CLIP widths (the transformer's joint_attention_dim / pooled_projection_dim)


def bundled_config(variant: str, part: str) -> dict:
    """The real config of FLUX.1 [``variant``]'s ``part`` (``transformer``, ``vae``, ``scheduler`` ...);
    Fill and Kontext are [dev] (Fill's transformer also takes the masked image and the mask)."""
    folder = resources_dir() / "configs" / f"flux1-{'schnell' if variant == 'schnell' else 'dev'}" / part
    name = "scheduler_config.json" if part == "scheduler" else "config.json"
    return json.loads((folder / name).read_text(encoding="utf-8"))


def tiny_transformer_config(variant: str = "dev") -> dict:
    """The transformer config of a tiny FLUX.1 [``variant``]: the real one with tiny widths (1 + 1 blocks)."""
    config = bundled_config(variant, "transformer")
    config.update(attention_head_dim=32, axes_dims_rope=[4, 14, 14], num_attention_heads=2, num_layers=1,
                  num_single_layers=1, joint_attention_dim=WIDTH, pooled_projection_dim=WIDTH)
    if variant == "fill":
        config.update(in_channels=384, out_channels=64)  # as FLUX.1 Fill [dev]'s config says
    return config


def tiny_components(variant: str = "dev", seed: int = 0) -> dict:
    """The FluxPipeline components of a tiny FLUX.1 [``variant``] (every module seeded)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    from engine.testencoders import clip_encoder, clip_tokenizer, t5_encoder, t5_tokenizer
    from engine.testmodels import randomize

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel.from_config(tiny_transformer_config(variant))
    vae_config = bundled_config(variant, "vae")
    vae_config.update(block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=8, sample_size=64)
    vae = AutoencoderKL.from_config(vae_config)
    tokenizer_2 = t5_tokenizer()
    text_encoder = clip_encoder(seed + 1, WIDTH, layers=2)
    text_encoder_2 = t5_encoder(seed + 2, len(tokenizer_2), WIDTH)
    generator = torch.Generator().manual_seed(seed)
    for module in (transformer, vae):
        randomize(module, generator, full=False)
    return dict(transformer=transformer.eval(), vae=vae.eval(), text_encoder=text_encoder,
                text_encoder_2=text_encoder_2, tokenizer=clip_tokenizer(), tokenizer_2=tokenizer_2,
                scheduler=FlowMatchEulerDiscreteScheduler.from_config(bundled_config(variant, "scheduler")))


def make_flux_test_model(dest: Path, variant: str = "dev", seed: int = 0) -> Path:
    """Write a tiny FLUX.1 [``variant``] diffusers folder to ``dest``; returns ``dest``."""
    import diffusers

    cls = {"fill": "FluxFillPipeline", "kontext": "FluxKontextPipeline"}.get(variant, "FluxPipeline")
    dest = Path(dest)
    getattr(diffusers, cls)(**tiny_components(variant, seed)).save_pretrained(dest, safe_serialization=True)
    return dest


def make_flux_comfyui_test_model(dest: Path, variant: str = "dev", seed: int = 0) -> Path:
    """Write the same tiny FLUX.1 as ComfyUI's split layout under ``dest`` (a ComfyUI install):
    ``models/diffusion_models/flux1-<variant>-tiny.safetensors`` (BFL names; [schnell] with ComfyUI's
    ``model.diffusion_model.`` prefix), ``models/text_encoders/clip_l.safetensors`` and
    ``t5xxl_fp16.safetensors``, ``models/vae/ae.safetensors``, and the T5 tokenizer where ComfyUI keeps
    its own (``comfy/text_encoders/t5_tokenizer``). Returns the transformer file."""
    from safetensors.torch import save_file

    from engine.families.flux.convert import PREFIX, diffusers_to_bfl
    from engine.ldm_layout import vae_to_original

    parts = tiny_components(variant, seed)
    dest = Path(dest)
    models = dest / "models"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True, exist_ok=True)

    def tensors(state: dict) -> dict:
        return {k: v.detach().contiguous().clone() for k, v in state.items()}

    prefix = PREFIX if variant == "schnell" else ""
    transformer = {prefix + k: v for k, v in diffusers_to_bfl(parts["transformer"].state_dict()).items()}
    target = models / "diffusion_models" / f"flux1-{variant}-tiny.safetensors"
    save_file(tensors(transformer), str(target))
    clip = {(k if k.startswith("text_model.") else "text_model." + k): v  # ComfyUI's (and OpenAI's HF) names
            for k, v in parts["text_encoder"].state_dict().items()}
    save_file(tensors(clip), str(models / "text_encoders" / "clip_l.safetensors"))
    t5 = {k: v for k, v in parts["text_encoder_2"].state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(tensors(t5), str(models / "text_encoders" / "t5xxl_fp16.safetensors"))
    save_file(tensors(vae_to_original(parts["vae"].state_dict())), str(models / "vae" / "ae.safetensors"))
    parts["tokenizer_2"].save_pretrained(str(dest / "comfy" / "text_encoders" / "t5_tokenizer"))
    return target


def make_flux_gguf_test_model(dest: Path, variant: str = "dev", seed: int = 0) -> Path:
    """The ComfyUI split layout of ``make_flux_comfyui_test_model`` with the transformer as a GGUF
    file instead (``models/diffusion_models/flux1-<variant>-tiny-Q8_0.gguf``, written with the gguf
    package as city96's files are: 2-D weights Q8_0, the rest F32). Returns the GGUF file."""
    from safetensors.torch import load_file

    from engine.families.flux.convert import PREFIX
    from engine.testmodels import write_gguf

    source = make_flux_comfyui_test_model(dest, variant, seed)
    tensors = {k.removeprefix(PREFIX): v for k, v in load_file(source).items()}
    source.unlink()
    target = write_gguf(tensors, source.with_name(f"flux1-{variant}-tiny-Q8_0.gguf"), arch="flux")
    return target


def make_flux_single_file_test_model(dest: Path, variant: str = "dev", seed: int = 0) -> Path:
    """The same tiny FLUX.1 as one all-in-one checkpoint, as ComfyUI saves them: the transformer under
    ``model.diffusion_model.``, CLIP-L and T5-XXL under ``text_encoders.{clip_l,t5xxl}.transformer.``
    and the VAE under ``vae.``. ``dest``: the ``.safetensors`` file (the T5 tokenizer goes beside it in
    ``t5xxl_tokenizer/``), or a ComfyUI install (``models/checkpoints/flux1-<variant>-tiny-aio.safetensors``,
    tokenizer where ComfyUI keeps its own). Returns the checkpoint."""
    from safetensors.torch import save_file

    from engine.families.flux.convert import PREFIX, diffusers_to_bfl
    from engine.ldm_layout import vae_to_original

    parts = tiny_components(variant, seed)
    dest = Path(dest)
    if dest.suffix == ".safetensors":
        target, tokenizer_dir = dest, dest.parent / "t5xxl_tokenizer"
    else:
        target = dest / "models" / "checkpoints" / f"flux1-{variant}-tiny-aio.safetensors"
        tokenizer_dir = dest / "comfy" / "text_encoders" / "t5_tokenizer"
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {PREFIX + k: v for k, v in diffusers_to_bfl(parts["transformer"].state_dict()).items()}
    for k, v in parts["text_encoder"].state_dict().items():
        state["text_encoders.clip_l.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    for k, v in parts["text_encoder_2"].state_dict().items():
        if k != "encoder.embed_tokens.weight":  # tied to shared.weight
            state["text_encoders.t5xxl.transformer." + k] = v
    state.update({"vae." + k: v for k, v in vae_to_original(parts["vae"].state_dict()).items()})
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(target))
    parts["tokenizer_2"].save_pretrained(str(tokenizer_dir))
    return target

"""A tiny random-weight Z-Image diffusers folder, built locally (tests and demos).

The components are the real classes from the released configs with tiny sizes: the single-stream
``ZImageTransformer2DModel`` (patch 2, 16 latent channels, qk-norm, 3-axis RoPE), a Qwen3 text encoder
and byte-level BPE tokenizer with Qwen3's chat template (``engine.testencoders``), the FLUX VAE's
layout (16 latent channels, 8x down, its scaling and shift factors) and the flow-matching Euler
scheduler with Z-Image's shift. Turbo and Base share the architecture; the folder's name tells them
apart, as the released repositories' names do. Nothing is downloaded. Calling thread.
"""

from __future__ import annotations

import json
from pathlib import Path

_TEXT_WIDTH = 32


def make_zimage_test_model(dest: Path, seed: int = 0, turbo: bool = True, released_rules: bool = False) -> Path:
    """Write a tiny Z-Image (``turbo``: Z-Image-Turbo) diffusers folder to ``dest``; returns ``dest``.
    ``released_rules``: what a split-layout file's shapes cannot tell follows the rules its loader
    uses (``engine.families.zimage.split``: RoPE axes 1/4, 3/8, 3/8 of the head; VAE group norms of
    min(32, the narrowest level)), so the same weights load from either layout."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

    from engine.core.loading import quiet_libraries
    from engine.testencoders import qwen3_encoder, qwen_tokenizer
    from engine.testmodels import randomize

    quiet_libraries()  # no "Writing model shards" bar on the terminal

    generator = torch.Generator().manual_seed(seed)
    tokenizer = qwen_tokenizer()
    text_encoder = qwen3_encoder(seed, len(tokenizer), width=_TEXT_WIDTH)

    torch.manual_seed(seed)
    # Z-Image-Turbo's transformer/config.json with the widths cut down (dim 3840 -> 32, 30 layers -> 2,
    # Qwen3-4B's 2560-wide features -> the tiny encoder's width; RoPE axes sum to the head size).
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=_TEXT_WIDTH, rope_theta=256.0,
        t_scale=1000.0, axes_dims=[4, 6, 6] if released_rules else [8, 4, 4], axes_lens=[1024, 64, 64],
    )
    # The FLUX.1 VAE (ae.safetensors) layout: four levels (8x down), 16 latent channels, no quant convs.
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 16, 16, 16], layers_per_block=1,
        latent_channels=16, norm_num_groups=8 if released_rules else 4, sample_size=64, scaling_factor=0.3611, shift_factor=0.1159,
        use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True, force_upcast=True,
    )
    for module in (transformer, vae, text_encoder):
        randomize(module, generator, full=False)
    with torch.no_grad():  # created with torch.empty: give them defined values
        for pad in (transformer.x_pad_token, transformer.cap_pad_token):
            pad.copy_(torch.empty(pad.shape).normal_(0.0, 0.02, generator=generator))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    pipe = ZImagePipeline(scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                          transformer=transformer.eval())
    dest = Path(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    index = json.loads((dest / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "ZImagePipeline"
    return dest


def write_transformer_file(folder: Path, dest: Path, comfyui: bool = False) -> Path:
    """The transformer of the tiny folder ``folder`` as one ``.safetensors`` file in the official
    Z-Image names (fused ``attention.qkv``, ``x_embedder``, ``final_layer``, ``q_norm``/``k_norm``), as
    Tongyi-MAI's and ComfyUI's ``diffusion_models`` files name them; ``comfyui`` puts them under
    ``model.diffusion_model.``. Returns ``dest``."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(Path(folder) / "transformer" / "diffusion_pytorch_model.safetensors"))
    renames = (("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
               (".attention.to_out.0.", ".attention.out."), (".attention.norm_k.", ".attention.k_norm."),
               (".attention.norm_q.", ".attention.q_norm."))
    out = {}
    for key, tensor in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            parts = [state[key.replace("to_q", part)] for part in ("to_q", "to_k", "to_v")]
            key, tensor = key.replace(".attention.to_q.", ".attention.qkv."), torch.cat(parts, dim=0)
        for old, new in renames:
            key = key.replace(old, new)
        out[("model.diffusion_model." if comfyui else "") + key] = tensor.contiguous()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(dest))
    return dest


def make_zimage_comfyui_test_model(dest: Path, seed: int = 0, turbo: bool = True, gguf: bool = False) -> Path:
    """Write the same tiny Z-Image as ComfyUI's split layout under ``dest`` (a ComfyUI install):
    ``models/diffusion_models/z_image[_turbo]-tiny.safetensors`` (Tongyi-MAI's names under ComfyUI's
    prefix; with ``gguf`` a Q8_0 ``.gguf`` instead), ``models/text_encoders/qwen_3_4b.safetensors``,
    ``models/vae/ae.safetensors`` (the FLUX.1 VAE's original names) and the Qwen tokenizer where ComfyUI
    keeps its own (``comfy/text_encoders/qwen25_tokenizer``). Returns the transformer file."""
    import tempfile

    from safetensors.torch import load_file, save_file
    from transformers import Qwen2Tokenizer

    from engine.ldm_layout import vae_to_original
    from engine.testmodels import write_gguf

    dest = Path(dest)
    models = dest / "models"
    stem = "z_image_turbo-tiny" if turbo else "z_image-tiny"
    with tempfile.TemporaryDirectory(prefix="easel-zimage-") as tmp:
        folder = make_zimage_test_model(Path(tmp) / "z", seed, turbo, released_rules=True)
        target = write_transformer_file(folder, models / "diffusion_models" / f"{stem}.safetensors", comfyui=True)
        encoder = load_file(str(folder / "text_encoder" / "model.safetensors"))
        (models / "text_encoders").mkdir(parents=True, exist_ok=True)
        save_file({"model." + k: v.contiguous() for k, v in encoder.items()},
                  str(models / "text_encoders" / "qwen_3_4b.safetensors"))
        vae = load_file(str(folder / "vae" / "diffusion_pytorch_model.safetensors"))
        (models / "vae").mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in vae_to_original(vae).items()}, str(models / "vae" / "ae.safetensors"))
        Qwen2Tokenizer.from_pretrained(str(folder / "tokenizer")).save_pretrained(
            str(dest / "comfy" / "text_encoders" / "qwen25_tokenizer"))
    if gguf:
        tensors = {k.removeprefix("model.diffusion_model."): v for k, v in load_file(str(target)).items()}
        target.unlink()
        target = write_gguf(tensors, target.with_name(f"{stem}-Q8_0.gguf"), arch="lumina2")
    return target

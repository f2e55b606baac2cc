"""Small real add-on files for tests, benchmarks and demos: LoRAs, embeddings, VAEs, tiny autoencoders,
and minimal files of every kind a model library meets (for scans).

``make_lora`` writes a kohya/A1111-layout LoRA (``lora_unet_*``/``lora_te_*`` with ``lora_down``/
``lora_up``/``alpha``) that fits a make-test-model family, so it really changes that model's output
(the transformer families' LoRAs: ``engine.testloras``).
``make_kind_file`` writes a valid safetensors file whose tensor names and shapes say "SD1 checkpoint",
"SDXL LoRA", "SD3 checkpoint", ... with tensors of a few bytes: what a header-only scan needs.
Runs on the calling thread (imports torch).
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.testmodels import build_pipeline, save_safetensors

_ATTN = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v",
         "attn2.to_out.0")
TEXT_ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")
_BASE_VERSION = {"sd15": "sd_v1", "sd2-v": "sd_v2", "sdxl": "sdxl_base_v1-0"}


def make_lora(dest: Path, family: str = "sd15", seed: int = 1, rank: int = 4, scale: float = 0.5,
              text_encoder: bool = True) -> Path:
    """A random LoRA in the kohya layout for a tiny make-test-model ``family`` (sd15, sd2-v, sdxl)."""
    pipe = build_pipeline(family, "tiny", seed=0)
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}

    def add(prefix: str, name: str, module: torch.nn.Linear) -> None:
        key = prefix + name.replace(".", "_")
        out_f, in_f = module.weight.shape
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, in_f, generator=g) * scale
        tensors[f"{key}.lora_up.weight"] = torch.randn(out_f, rank, generator=g) * scale
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))

    for name, module in pipe.unet.named_modules():
        if name.endswith(_ATTN):
            add("lora_unet_", name, module)
    if text_encoder:
        encoders = [("lora_te1_" if family == "sdxl" else "lora_te_", pipe.text_encoder)]
        if family == "sdxl":
            encoders.append(("lora_te2_", pipe.text_encoder_2))
        for prefix, encoder in encoders:
            for name, module in encoder.named_modules():
                if name.endswith(TEXT_ATTENTION):
                    add(prefix, name, module)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(dest, tensors, {"ss_base_model_version": _BASE_VERSION.get(family, "sd_v1")})
    return dest


def make_embedding(dest: Path, family: str = "sd15", vectors: int = 2, seed: int = 2) -> Path:
    """A textual-inversion embedding (A1111 safetensors layout) for a tiny ``family`` model."""
    from engine.testmodels import tiny_sizes

    g = torch.Generator().manual_seed(seed)
    sizes = tiny_sizes(family)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if family == "sdxl":
        tensors = {"clip_l": torch.randn(vectors, sizes["text_encoder"]["hidden_size"], generator=g),
                   "clip_g": torch.randn(vectors, sizes["text_encoder_2"]["hidden_size"], generator=g)}
    else:
        tensors = {"emb_params": torch.randn(vectors, sizes["text_encoder"]["hidden_size"], generator=g)}
    save_safetensors(dest, tensors)
    return dest


def make_vae(dest: Path, family: str = "sd15", seed: int = 3) -> Path:
    """A standalone VAE file (original LDM layout, as A1111's models/VAE holds) for a tiny ``family``."""
    from engine import architectures as arch
    from engine.ldm_layout import to_original_layout

    pipe = build_pipeline(family, "tiny", seed=seed)
    full = to_original_layout(pipe.components, arch.TEST_FAMILIES[family][0])
    tensors = {k.removeprefix("first_stage_model."): v for k, v in full.items() if k.startswith("first_stage_model.")}
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(dest, tensors)
    return dest


def make_taesd(dest: Path, seed: int = 4) -> Path:
    """A tiny random ``AutoencoderTiny`` folder (the TAESD layout diffusers reads)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    vae = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                          num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
    vae.save_pretrained(dest, safe_serialization=True)
    return Path(dest)


# TAEF2's first decoder stage (diffusers layer indices 2-4) and last encoder stage (11-13) carry the
# mid-block GroupNorm pool (engine.core.tiny_decoder).
TAEF2_POOLED = {"decoder": (2, 3, 4), "encoder": (11, 12, 13)}


def make_taef2(dest: Path, layout: str = "diffusers", seed: int = 4, width: int = 8) -> Path:
    """A random tiny TAEF2 (FLUX.2's tiny autoencoder: 32 latent channels, mid-block pools) as one
    ``.safetensors`` file ``dest``: ``layout`` "diffusers" is madebyollin/taef2's ``taef2.safetensors``
    (``encoder.layers.N.*`` + ``decoder.layers.N.*``, weights only), "comfyui" the decoder alone in
    taesd.py's flat names (``models/vae_approx/taef2_decoder.safetensors``: index + 1). ``width``: the
    channels of every stage (the real one's 64)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    vae = AutoencoderTiny(latent_channels=32, encoder_block_out_channels=(width,) * 4,
                          decoder_block_out_channels=(width,) * 4)
    state = {k: v.contiguous() for k, v in vae.state_dict().items()}
    pool = 4 * width
    for part, indices in TAEF2_POOLED.items():
        for i in indices:
            prefix = f"{part}.layers.{i}.pool."
            state[prefix + "0.weight"] = torch.randn(pool, width, 1, 1) * 0.2
            state[prefix + "1.weight"] = 1 + 0.1 * torch.randn(pool)
            state[prefix + "1.bias"] = 0.1 * torch.randn(pool)
            state[prefix + "3.weight"] = torch.randn(width, pool, 1, 1) * 0.2
    if layout == "comfyui":
        state = {f"{int(k.split('.')[2]) + 1}.{k.split('.', 3)[3]}": v for k, v in state.items()
                 if k.startswith("decoder.layers.")}
    elif layout != "diffusers":
        raise ValueError(f"unknown TAEF2 layout {layout!r} (diffusers, comfyui)")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(dest, state)
    return dest


# ------------------------------------------------------------------------------------------------
# Minimal files of each kind (header-true, a few bytes of data)
# ------------------------------------------------------------------------------------------------

_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"


def kind_tensors(kind: str, family: str = "sd1") -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes that make a header read as ``kind`` of ``family``."""
    te = {"sd1": "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
          "sd2": "cond_stage_model.model.token_embedding.weight",
          "sdxl": "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"}
    width = {"sd1": 768, "sd2": 1024, "sdxl": 2048}[family]
    if kind in ("checkpoint", "inpaint"):
        shapes = {_UNET_IN: (1, 9 if kind == "inpaint" else 4, 1, 1), te[family]: (1, 1),
                  "first_stage_model.decoder.conv_out.weight": (1, 1, 1, 1)}
        if family == "sdxl":
            shapes["conditioner.embedders.1.model.token_embedding.weight"] = (1, 1)
            shapes["model.diffusion_model.label_emb.0.0.weight"] = (1, 1)
        return shapes
    if kind == "lora":
        key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
        return {f"{key}.lora_down.weight": (1, width), f"{key}.lora_up.weight": (1, 1), f"{key}.alpha": ()}
    if kind == "embedding":
        return {"clip_l": (1, 1), "clip_g": (1, 1)} if family == "sdxl" else {"emb_params": (1, width)}
    if kind == "vae":
        return {"encoder.conv_in.weight": (1, 1, 1, 1), "decoder.conv_out.weight": (1, 1, 1, 1)}
    if kind == "upscaler":
        return {"conv_first.weight": (1, 1, 1, 1), "body.0.weight": (1,)}
    if kind == "sd3":
        return {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (1, 1)}
    raise ValueError(f"unknown kind {kind!r}")


def make_kind_file(dest: Path, kind: str, family: str = "sd1") -> Path:
    """A valid safetensors file whose header reads as ``kind`` (checkpoint, inpaint, lora, embedding,
    vae, upscaler, sd3) of ``family`` (sd1, sd2, sdxl); tensors are zeros of the given shapes."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: torch.zeros(shape, dtype=torch.float16) for k, shape in kind_tensors(kind, family).items()}
    save_safetensors(dest, tensors)
    return dest


# A tiny CLIP vision image encoder (transformers CLIPVisionModelWithProjection) and IP-Adapter for it.
TINY_IMAGE_ENCODER = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 1,
                      "image_size": 32, "patch_size": 8, "projection_dim": 16, "hidden_act": "gelu",
                      "layer_norm_eps": 1e-5}


def make_image_encoder(dest: Path, single_file: bool = False, seed: int = 5) -> Path:
    """A random tiny CLIP vision image encoder: a folder (config.json + model.safetensors, as h94's
    ``image_encoder/``) or, ``single_file``, one .safetensors in transformers' names (ComfyUI ``clip_vision``)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_IMAGE_ENCODER)).eval()
    dest = Path(dest)
    if single_file:
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(dest, {k: v.contiguous() for k, v in model.state_dict().items()})
        return dest
    model.save_pretrained(dest, safe_serialization=True)
    return dest


def make_ip_adapter(dest: Path, family: str = "sd15", seed: int = 6, scale: float = 0.5) -> Path:
    """A random IP-Adapter (plain: the image embedding as 4 prompt tokens) in h94's file layout
    (``image_proj.*``, ``ip_adapter.N.to_k_ip/to_v_ip``), sized for the tiny make-test-model ``family``
    (its cross-attention) and the tiny image encoder (``make_image_encoder``)."""
    pipe = build_pipeline(family, "tiny", seed=0)
    unet = pipe.unet
    cross = unet.config.cross_attention_dim
    embed = TINY_IMAGE_ENCODER["projection_dim"]
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "image_proj.proj.weight": torch.randn(cross * 4, embed, generator=g) * scale,
        "image_proj.proj.bias": torch.randn(cross * 4, generator=g) * scale,
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    channels = list(unet.config.block_out_channels)
    for name in unet.attn_processors:  # diffusers' numbering: every cross-attention layer, odd ids
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=g) * scale
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=g) * scale
        key_id += 2
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(dest, tensors)
    return dest

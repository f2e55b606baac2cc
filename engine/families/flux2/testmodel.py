"""Tiny random-weight FLUX.2 [klein] models, built locally from the bundled real configs
(``resources/configs/flux2-klein-4b``) with tiny dimensions: a 1 + 1 block Flux2Transformer2DModel
(128 input channels, 4-axis RoPE, no biases, as released), a tiny Qwen3ForCausalLM with the byte-level
BPE tokenizer and Qwen3's chat template (``engine.testencoders``: 27 layers, because Klein reads its
hidden states 9, 18 and 27), and an AutoencoderKLFlux2 with the real 8x depth, 32 latent channels and
its batch-norm statistics. Written as a diffusers folder, ComfyUI's split layout (BFL names) or the
same with the transformer as a Q8_0 GGUF file. Tests and demos; calling thread (imports torch).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.paths import resources_dir

TEXT_WIDTH = 32
TEXT_LAYERS = 27  # Klein stacks the hidden states after layers 9, 18 and 27
DEV_TEXT_LAYERS = 30  # FLUX.2 [dev] the Mistral hidden states after layers 10, 20 and 30
PREFIX = "model.diffusion_model."

# diffusers Flux2Transformer2DModel names -> BFL's (the released flux-2-klein-*.safetensors), the
# inverse of diffusers' own ``convert_flux2_transformer_checkpoint_to_diffusers``.
_TOP = {"x_embedder": "img_in", "context_embedder": "txt_in",
        "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
        "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
        "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",  # FLUX.2 [dev]'s
        "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
        "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
        "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
        "single_stream_modulation.linear": "single_stream_modulation.lin", "proj_out": "final_layer.linear"}
_DOUBLE = {"attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
           "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm",
           "attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj", "ff.linear_in": "img_mlp.0",
           "ff.linear_out": "img_mlp.2", "ff_context.linear_in": "txt_mlp.0", "ff_context.linear_out": "txt_mlp.2"}
_QKV = {("attn.to_q", "attn.to_k", "attn.to_v"): "img_attn.qkv",
        ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"): "txt_attn.qkv"}
_SINGLE = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2", "attn.norm_q": "norm.query_norm",
           "attn.norm_k": "norm.key_norm"}


def bundled_config(part: str, size: str = "4b") -> dict:
    """The real config of FLUX.2 [klein] ``size``'s ``part`` (``transformer``, ``vae``, ``scheduler``,
    ``text_encoder``); ``size`` "dev": FLUX.2 [dev]'s."""
    name = "scheduler_config.json" if part == "scheduler" else "config.json"
    folder = f"flux2-{size}" if size == "dev" else f"flux2-klein-{size}"
    return json.loads((resources_dir() / "configs" / folder / part / name).read_text(encoding="utf-8"))


def _tiny_transformer_and_vae(seed: int, dev: bool):
    """The tiny Flux2Transformer2DModel (FLUX.2 [dev]'s has the guidance embedder) and AutoencoderKLFlux2."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel

    from engine.testmodels import randomize

    torch.manual_seed(seed)
    config = bundled_config("transformer", "dev" if dev else "4b")
    config.update(attention_head_dim=16, axes_dims_rope=[4, 4, 4, 4], num_attention_heads=2, num_layers=1,
                  num_single_layers=1, joint_attention_dim=3 * TEXT_WIDTH)
    transformer = Flux2Transformer2DModel.from_config(config)
    vae_config = bundled_config("vae")
    vae_config.update(block_out_channels=[8, 16, 16, 16], layers_per_block=1, norm_num_groups=8, sample_size=64)
    vae = AutoencoderKLFlux2.from_config(vae_config)
    generator = torch.Generator().manual_seed(seed)
    for module in (transformer, vae):
        randomize(module, generator, full=False)
    with torch.no_grad():  # batch-norm statistics of a trained VAE are not 0 / 1: give them values
        vae.bn.running_mean.copy_(torch.empty(vae.bn.running_mean.shape).normal_(0.0, 0.1, generator=generator))
        vae.bn.running_var.copy_(torch.empty(vae.bn.running_var.shape).uniform_(0.5, 2.0, generator=generator))
    return transformer.eval(), vae.eval()


def tiny_components(distilled: bool = True, seed: int = 0) -> dict:
    """The Flux2KleinPipeline components of a tiny FLUX.2 [klein] (every module seeded)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from engine.testencoders import qwen3_encoder, qwen_tokenizer

    transformer, vae = _tiny_transformer_and_vae(seed, dev=False)
    tokenizer = qwen_tokenizer()
    text_encoder = qwen3_encoder(seed + 1, len(tokenizer), TEXT_WIDTH, layers=TEXT_LAYERS, causal_lm=True,
                                 rope_theta=float(bundled_config("text_encoder")["rope_theta"]))
    return dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                scheduler=FlowMatchEulerDiscreteScheduler.from_config(bundled_config("scheduler")),
                is_distilled=distilled)


def tiny_dev_components(seed: int = 0) -> dict:
    """The Flux2Pipeline components of a tiny FLUX.2 [dev]: the transformer with its guidance embedder,
    a tiny Mistral3ForConditionalGeneration (30 layers: [dev] reads hidden states 10, 20 and 30) and
    the locally trained Mistral tokenizer (every module seeded)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from engine.testencoders import mistral3_encoder, mistral_tokenizer

    transformer, vae = _tiny_transformer_and_vae(seed, dev=True)
    tokenizer = mistral_tokenizer()
    text_encoder = mistral3_encoder(seed + 1, len(tokenizer), TEXT_WIDTH, layers=DEV_TEXT_LAYERS)
    return dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                scheduler=FlowMatchEulerDiscreteScheduler.from_config(bundled_config("scheduler", "dev")))


def make_flux2_test_model(dest: Path, distilled: bool = True, seed: int = 0, dev: bool = False) -> Path:
    """Write a tiny FLUX.2 [klein] (``distilled`` or base) diffusers folder to ``dest`` (``dev``: a tiny
    FLUX.2 [dev], whose model_index names the tokenizer PixtralProcessor as the released one does);
    returns ``dest``."""
    from diffusers import Flux2KleinPipeline, Flux2Pipeline

    from engine.core.loading import quiet_libraries

    quiet_libraries()
    dest = Path(dest)
    if not dev:
        Flux2KleinPipeline(**tiny_components(distilled, seed)).save_pretrained(dest, safe_serialization=True)
        return dest
    Flux2Pipeline(**tiny_dev_components(seed)).save_pretrained(dest, safe_serialization=True)
    index = json.loads((dest / "model_index.json").read_text(encoding="utf-8"))
    index["tokenizer"] = ["transformers", "PixtralProcessor"]
    (dest / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return dest


def _rename(key: str, table: dict) -> str | None:
    for old, new in table.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old):]
    return None


def diffusers_to_bfl(state_dict: dict) -> dict:
    """A Flux2Transformer2DModel state dict in BFL's names (fused q/k/v, (shift, scale) final norm)."""
    import torch

    out: dict = {}
    fused: dict = {}
    for key, value in state_dict.items():
        if key.startswith("norm_out.linear."):
            scale, shift = value.chunk(2, dim=0)
            out["final_layer.adaLN_modulation.1." + key.rpartition(".")[2]] = torch.cat([shift, scale], dim=0)
            continue
        head, _, rest = key.partition(".")
        if head in ("transformer_blocks", "single_transformer_blocks"):
            index, _, rest = rest.partition(".")
            name, _, leaf = rest.rpartition(".")
            leaf = "scale" if "norm" in name and leaf == "weight" else leaf
            if head == "transformer_blocks":
                group = next((g for g in _QKV if name in g), None)
                if group is not None:
                    fused.setdefault(f"double_blocks.{index}.{_QKV[group]}.{leaf}", {})[group.index(name)] = value
                    continue
                new = _DOUBLE.get(name)
                out[f"double_blocks.{index}.{new}.{leaf}"] = value
            else:
                out[f"single_blocks.{index}.{_SINGLE[name]}.{leaf}"] = value
            continue
        new = _rename(key, _TOP)
        if new is None:
            raise ValueError(f"unknown diffusers FLUX.2 tensor {key}")
        out[new] = value
    for key, parts in fused.items():
        out[key] = torch.cat([parts[i] for i in sorted(parts)], dim=0)
    return out


def vae_to_bfl(state_dict: dict) -> dict:
    """An AutoencoderKLFlux2 state dict in BFL's names (``flux2-vae.safetensors``): the original
    autoencoder layout, its quant convs inside the encoder and decoder, and the batch-norm statistics."""
    from engine.ldm_layout import vae_to_original

    plain = {k: v for k, v in state_dict.items() if not k.startswith("bn.")}
    out = {}
    for key, value in vae_to_original(plain).items():
        if key.startswith("quant_conv."):
            key = "encoder." + key
        elif key.startswith("post_quant_conv."):
            key = "decoder." + key
        out[key] = value
    out.update({k: v for k, v in state_dict.items() if k in ("bn.running_mean", "bn.running_var")})
    return out


def _save(tensors: dict, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path))


def transformer_file_name(distilled: bool, dev: bool = False) -> str:
    return "flux2_dev_tiny" if dev else f"flux-2-klein-{'' if distilled else 'base-'}tiny"


DEV_TEXT_ENCODER = "mistral_3_small_flux2_tiny.safetensors"


def make_flux2_comfyui_test_model(dest: Path, distilled: bool = True, seed: int = 0, dev: bool = False) -> Path:
    """Write the same tiny FLUX.2 [klein] as ComfyUI's split layout under ``dest`` (a ComfyUI install):
    ``models/diffusion_models/flux-2-klein[-base]-tiny.safetensors`` (BFL names, as released: the
    name says base or distilled), ``models/text_encoders/qwen_3_4b.safetensors`` (Hugging Face names),
    ``models/vae/flux2-vae.safetensors``, and the Qwen tokenizer where ComfyUI keeps its own
    (``comfy/text_encoders/qwen25_tokenizer``). ``dev``: a tiny FLUX.2 [dev] as Comfy-Org's
    repackaged files are: ``diffusion_models/flux2_dev_tiny.safetensors``, the Mistral language model
    (``model.*`` names, no vision tower) as ``text_encoders/mistral_3_small_flux2_tiny.safetensors``,
    the same VAE, and the Mistral tokenizer files in ``text_encoders/mistral3_tokenizer`` (ComfyUI
    keeps its own inside the text encoder file). Returns the transformer file."""
    parts = tiny_dev_components(seed) if dev else tiny_components(distilled, seed)
    dest = Path(dest)
    models = dest / "models"
    target = models / "diffusion_models" / f"{transformer_file_name(distilled, dev)}.safetensors"
    _save(diffusers_to_bfl(parts["transformer"].state_dict()), target)
    _save(vae_to_bfl(parts["vae"].state_dict()), models / "vae" / "flux2-vae.safetensors")
    if dev:
        language = parts["text_encoder"].model.language_model.state_dict()
        _save({f"model.{k}": v for k, v in language.items()}, models / "text_encoders" / DEV_TEXT_ENCODER)
        parts["tokenizer"].save_pretrained(str(models / "text_encoders" / "mistral3_tokenizer"))
        return target
    encoder = {k: v for k, v in parts["text_encoder"].state_dict().items() if k != "lm_head.weight"}  # tied
    _save(encoder, models / "text_encoders" / "qwen_3_4b.safetensors")
    parts["tokenizer"].save_pretrained(str(dest / "comfy" / "text_encoders" / "qwen25_tokenizer"))
    return target


def make_flux2_gguf_test_model(dest: Path, distilled: bool = True, seed: int = 0, dev: bool = False) -> Path:
    """The split layout of ``make_flux2_comfyui_test_model`` with the transformer as a GGUF file
    (``models/diffusion_models/flux-2-klein[-base]-tiny-Q8_0.gguf``, ``flux2_dev_tiny-Q8_0.gguf``,
    written with the gguf package as city96's and unsloth's files are: 2-D weights Q8_0, the rest F32).
    Returns the GGUF file."""
    from safetensors.torch import load_file

    from engine.testmodels import write_gguf

    source = make_flux2_comfyui_test_model(dest, distilled, seed, dev)
    tensors = load_file(source)
    source.unlink()

    return write_gguf(tensors, source.with_name(f"{transformer_file_name(distilled, dev)}-Q8_0.gguf"), "flux2")

"""FLUX.2 [klein] and [dev] from ComfyUI's split layout: a transformer file in BFL's names (safetensors
or GGUF) plus the Qwen3 (Klein) or Mistral 3 Small ([dev]) text encoder and the FLUX.2 VAE that
``engine.files.split`` finds beside it, assembled into one Flux2KleinPipeline / Flux2Pipeline offline.

[dev]'s text encoder file holds Mistral's language model alone (Comfy-Org's files; a whole
Mistral3ForConditionalGeneration file's vision tower is left out): the pipeline reads only its hidden
states, so it runs as a ``MistralModel``. Its head width, which shapes cannot tell apart from the
head count, is Mistral Small's 128 (the tiny test encoders are built with it too).

Each component's config is the bundled real one (``resources/configs/flux2-klein-4b`` / ``-9b``) with
every size the tensors tell put in; what shapes cannot tell follows one fixed rule, the same the tiny
test models are built with: four equal RoPE axes of a quarter of the head width (FLUX.2: 32 each of
128), VAE group norms min(32, narrowest level). The transformer's names are converted by diffusers'
own FLUX.2 converter; the VAE's (BFL's autoencoder layout with its quant convs inside the encoder and
decoder, plus the batch-norm statistics) by diffusers' original-layout VAE converter. Engine thread
(imports torch, diffusers, transformers).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from engine.api import ModelInfo
from engine.core.parts import tensors
from engine.files import split
from engine.files.headers import read_gguf_header, read_header
from engine.paths import resources_dir

_PREFIX = split.DIFFUSION_PREFIX


def _config(size: str, part: str) -> dict:
    """The bundled real config of ``part`` for a [klein] ``size`` ("4b" / "9b"; "" = 4b) or "dev"."""
    name = "scheduler_config.json" if part == "scheduler" else "config.json"
    folder = resources_dir() / "configs" / ("flux2-dev" if size == "dev" else f"flux2-klein-{size or '4b'}") / part
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _count(names, pattern: str) -> int:
    found = {int(m.group(1)) for n in names if (m := re.match(pattern, n))}
    return max(found) + 1 if found else 0


def transformer_config(shapes: dict, size: str = "") -> dict:
    """The Flux2Transformer2DModel config for a BFL-named transformer with these tensor shapes."""
    config = _config(size, "transformer")
    inner, in_channels = shapes["img_in.weight"][0], shapes["img_in.weight"][-1]
    head = shapes["double_blocks.0.img_attn.norm.query_norm.scale"][0]
    config.update(
        in_channels=in_channels, attention_head_dim=head, num_attention_heads=inner // head,
        num_layers=_count(shapes, r"double_blocks\.(\d+)\."), num_single_layers=_count(shapes, r"single_blocks\.(\d+)\."),
        joint_attention_dim=shapes["txt_in.weight"][-1], timestep_guidance_channels=shapes["time_in.in_layer.weight"][-1],
        mlp_ratio=shapes["double_blocks.0.img_mlp.0.weight"][0] / 2 / inner, axes_dims_rope=[head // 4] * 4,
        guidance_embeds="guidance_in.in_layer.weight" in shapes,
    )
    return config


def vae_config(shapes: dict) -> dict:
    """The AutoencoderKLFlux2 config for a BFL-layout (``flux2-vae.safetensors``) VAE with these shapes."""
    from engine.core.parts import sized_vae_config

    return sized_vae_config(_config("4b", "vae"), shapes)


def qwen3_config(shapes: dict, size: str = "") -> dict:
    config = _config("9b" if shapes["model.embed_tokens.weight"][-1] == 4096 else size, "text_encoder")
    vocab, width = shapes["model.embed_tokens.weight"]
    head = shapes["model.layers.0.self_attn.q_norm.weight"][0]
    config.update(vocab_size=vocab, hidden_size=width, head_dim=head,
                  intermediate_size=shapes["model.layers.0.mlp.gate_proj.weight"][0],
                  num_hidden_layers=_count(shapes, r"model\.layers\.(\d+)\."),
                  num_attention_heads=shapes["model.layers.0.self_attn.q_proj.weight"][0] // head,
                  num_key_value_heads=shapes["model.layers.0.self_attn.k_proj.weight"][0] // head,
                  tie_word_embeddings="lm_head.weight" not in shapes)  # ComfyUI's files leave a tied head out
    config["max_window_layers"] = config["num_hidden_layers"]
    return config


def load_transformer(path: str, dtype, size: str = "", quantization=None):
    """The Flux2Transformer2DModel of a BFL-named ``.safetensors`` file (with ``quantization``: a GGUF
    file's, its weights kept quantized), converted by diffusers' FLUX.2 converter."""
    from diffusers import Flux2Transformer2DModel

    if quantization is None:
        checkpoint = tensors(path)
        shapes = {k: tuple(v.shape) for k, v in checkpoint.items()}
    else:
        from diffusers.loaders.single_file_utils import load_single_file_checkpoint

        checkpoint = load_single_file_checkpoint(path, local_files_only=True)
        shapes = {k: tuple(getattr(v, "quant_shape", None) or v.shape) for k, v in checkpoint.items()}
    if any(k.startswith(_PREFIX) for k in checkpoint):  # ComfyUI's prefix: the converter expects none
        checkpoint = {k[len(_PREFIX):]: v for k, v in checkpoint.items() if k.startswith(_PREFIX)}
        shapes = {k[len(_PREFIX):]: v for k, v in shapes.items() if k.startswith(_PREFIX)}
    with tempfile.TemporaryDirectory(prefix="easel-flux2-") as tmp:
        folder = Path(tmp) / "transformer"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(transformer_config(shapes, size)), encoding="utf-8")
        extra = {"quantization_config": quantization} if quantization is not None else {}
        return Flux2Transformer2DModel.from_single_file(checkpoint, config=tmp, subfolder="transformer",
                                                        torch_dtype=dtype, local_files_only=True, **extra).eval()


def load_vae(part: split.Part, dtype):
    """The AutoencoderKLFlux2 of a BFL-layout VAE file (``flux2-vae.safetensors``)."""
    import torch
    from diffusers import AutoencoderKLFlux2
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = tensors(part.path, part.prefix)
    lifted = {("quant_conv." + k[len("encoder.quant_conv."):] if k.startswith("encoder.quant_conv.") else
               "post_quant_conv." + k[len("decoder.post_quant_conv."):] if k.startswith("decoder.post_quant_conv.")
               else k): v for k, v in state.items()}
    config = vae_config({k: tuple(v.shape) for k, v in lifted.items()})
    converted = convert_ldm_vae_checkpoint({k: v for k, v in lifted.items() if not k.startswith("bn.")}, config)
    for name in ("running_mean", "running_var"):
        converted[f"bn.{name}"] = lifted[f"bn.{name}"]
    converted["bn.num_batches_tracked"] = lifted.get("bn.num_batches_tracked", torch.tensor(0))
    vae = AutoencoderKLFlux2.from_config(config)
    vae.load_state_dict(converted, strict=True)
    return vae.to(dtype).eval()


def load_text_encoder(part: split.Part, dtype, size: str = ""):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    state = tensors(part.path, part.prefix)
    config = Qwen3Config(**qwen3_config({k: tuple(v.shape) for k, v in state.items()}, size))
    return Qwen3ForCausalLM.from_pretrained(None, config=config, state_dict=state, torch_dtype=dtype).eval()


MISTRAL_HEAD = 128  # Mistral 3 Small's head width (its 32 heads x 128 are not its 5120 width)


def mistral_config(shapes: dict) -> dict:
    """The MistralConfig (FLUX.2 [dev]'s bundled text config, sized) for a language model with these
    shapes (names without their prefix: ``embed_tokens.weight``, ``layers.0.…``)."""
    config = _config("dev", "text_encoder")["text_config"]
    vocab, width = shapes["embed_tokens.weight"]
    config.update(vocab_size=vocab, hidden_size=width, head_dim=MISTRAL_HEAD,
                  intermediate_size=shapes["layers.0.mlp.gate_proj.weight"][0],
                  num_hidden_layers=_count(shapes, r"layers\.(\d+)\."),
                  num_attention_heads=shapes["layers.0.self_attn.q_proj.weight"][0] // MISTRAL_HEAD,
                  num_key_value_heads=shapes["layers.0.self_attn.k_proj.weight"][0] // MISTRAL_HEAD)
    return config


def load_mistral_text_encoder(part: split.Part, dtype):
    """FLUX.2 [dev]'s text encoder as the ``MistralModel`` of a Mistral 3 language model file (ComfyUI's
    ``model.*`` names, or a whole Mistral3ForConditionalGeneration's: its language model taken)."""
    from transformers import MistralConfig, MistralModel

    header = {k[len(part.prefix):]: v for k, v in read_header(part.path).tensors.items() if k.startswith(part.prefix)}
    prefix = part.prefix + split.mistral_prefix(header)
    state = {k: v for k, v in tensors(part.path, prefix).items() if k.startswith(("embed_tokens.", "layers.", "norm."))}
    config = MistralConfig(**mistral_config({k: tuple(v.shape) for k, v in state.items()}))
    return MistralModel.from_pretrained(None, config=config, state_dict=state, torch_dtype=dtype).eval()


def load_mistral_tokenizer(folder: Path):
    """FLUX.2 [dev]'s Mistral 3 tokenizer from the files in ``folder`` (tokenizer.json), with its chat
    template (``chat_template.jinja``, a processor's ``chat_template.json``, else Mistral Small's as
    the pipeline applies it: a system turn and the prompt)."""
    from transformers import PreTrainedTokenizerFast

    from engine.testencoders import MISTRAL_CHAT_TEMPLATE

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if not tokenizer.chat_template and (folder / "chat_template.json").is_file():
        tokenizer.chat_template = json.loads((folder / "chat_template.json").read_text(encoding="utf-8")).get(
            "chat_template")
    if not tokenizer.chat_template:
        tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    return tokenizer


def load_tokenizer(folder: Path):
    """The Qwen tokenizer in ``folder``, with Qwen3's chat template where the folder has another
    (ComfyUI's ``qwen25_tokenizer`` carries Qwen2.5's, which knows no ``enable_thinking``)."""
    from transformers import Qwen2TokenizerFast

    from engine.testencoders import QWEN_CHAT_TEMPLATE

    tokenizer = Qwen2TokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if "enable_thinking" not in (tokenizer.chat_template or ""):
        tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def load_split(info: ModelInfo, dtype, distilled: bool):
    """The Flux2KleinPipeline (a [dev] transformer: Flux2Pipeline) of the split-layout model whose
    transformer is ``info.path`` (a GGUF file when ``info.format`` says so). Raises ModelError
    (split.MissingPart) with one line naming what is missing."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Pipeline

    from engine.families.flux2 import probe

    gguf = info.format == "gguf"
    denoiser = split.identify(read_gguf_header(info.path) if gguf else read_header(info.path))
    parts = split.find_parts(denoiser)  # raises MissingPart
    dev = denoiser.arch == "flux2-dev"
    text_arch = next(arch for arch, _ in split.NEEDS[denoiser.arch] if arch.startswith(("qwen3", "mistral3")))
    folder = split.find_tokenizer(text_arch, info.path)  # raises MissingPart
    tokenizer = load_mistral_tokenizer(folder) if dev else load_tokenizer(folder)
    size = "dev" if dev else probe.size_of(info.variant or denoiser.variant)
    quantization = None
    if gguf:  # quantized weights stay quantized; each layer computes in ``dtype``
        from diffusers import GGUFQuantizationConfig

        quantization = GGUFQuantizationConfig(compute_dtype=dtype)
    transformer = load_transformer(info.path, dtype, size, quantization)
    vae = load_vae(parts["flux2-vae"], dtype)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(_config(size, "scheduler"))
    if dev:
        return Flux2Pipeline(transformer=transformer, vae=vae, text_encoder=load_mistral_text_encoder(
            parts[text_arch], dtype), tokenizer=tokenizer, scheduler=scheduler)
    text_encoder = load_text_encoder(parts[text_arch], dtype, size)
    return Flux2KleinPipeline(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler, is_distilled=distilled)

"""Loading the parts of a split-layout model (ComfyUI's ``diffusion_models`` + ``text_encoders`` +
``vae`` files, or the same parts inside one all-in-one checkpoint) that several families share: the
tensors of one part, the FLUX.1 VAE (``ae.safetensors``: FLUX.1 and Z-Image decode with it), a
transformers text encoder from a state dict, and a diffusers transformer from a converted state
dict (safetensors or GGUF), each with a config that the tensors' shapes fill in, so nothing is ever
fetched. ``engine.files.split`` finds the files; the families say what their parts are. Engine thread
(imports torch, diffusers, transformers).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from engine.paths import resources_dir


def count(names, pattern: str) -> int:
    """1 + the largest block index ``pattern``'s group matches among ``names`` (0 when none)."""
    found = {int(m.group(1)) for n in names if (m := re.match(pattern, n))}
    return max(found) + 1 if found else 0


def tensors(path: str, prefix: str = "") -> dict:
    """The tensors of ``path`` under ``prefix`` (the prefix taken off; all of them for ""), read
    without the rest of the file (an all-in-one checkpoint holds every part); ComfyUI's scaled fp8
    weights come back as plain weights (``unscaled``)."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        state = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        metadata = f.metadata() or {}
    return unscaled(state, path, metadata)


# ComfyUI's scaled fp8 files (``t5xxl_fp8_e4m3fn_scaled``, ``qwen_2.5_vl_7b_fp8_scaled``, ``*_fp8_scaled``
# checkpoints): a layer's ``weight`` is fp8 values of weight / scale, with the scale beside it, as
# ``<layer>.scale_weight`` (the older files, marked by an empty ``scaled_fp8`` tensor) or
# ``<layer>.weight_scale`` (comfy-kitchen's, each layer marked by ``<layer>.comfy_quant``, the JSON
# {"format": ...} as bytes, or listed in the ``_quantization_metadata`` header entry).
_SCALES = (".scale_weight", ".weight_scale")
_DROPPED = (".scale_input", ".input_scale", ".activation_scale", ".comfy_quant")
_FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")


def unscaled(state: dict, path: str, metadata: dict | None = None) -> dict:
    """``state`` with ComfyUI's scaled fp8 layers turned back into plain weights (the fp8 values times
    their scale, in bf16: cast to fp8 without the scale they would be the wrong size and make noise);
    the scales and markers taken out. Other quantized layouts (NVFP4, MXFP8, int8) are refused in one
    line (UnsupportedModel). Anything else comes back as it is."""
    if "scaled_fp8" not in state and not any(k.endswith(_SCALES + (".comfy_quant",)) for k in state):
        return state
    import torch

    from engine.api import UnsupportedModel

    formats = {k: _quant_format(v) for k, v in state.items() if k.endswith(".comfy_quant")}
    try:
        listed = json.loads((metadata or {}).get("_quantization_metadata", "{}")).get("layers", {})
    except (ValueError, AttributeError):
        listed = {}
    formats.update({k: str(v.get("format", "")) for k, v in listed.items() if isinstance(v, dict)})
    other = sorted({f for f in formats.values() if f not in _FP8_FORMATS})
    if other:
        raise UnsupportedModel(path, f"its weights are quantized as {other[0] or 'an unnamed format'} (a ComfyUI "
                               "quantized layout Easel cannot read): use the model's bf16, fp16 or fp8 file")
    out = {}
    for key, value in state.items():
        if key == "scaled_fp8" or key.endswith(_SCALES + _DROPPED):
            continue
        base = key.removesuffix(".weight")
        scale = state.get(base + ".scale_weight", state.get(base + ".weight_scale")) if key.endswith(".weight") else None
        if scale is not None:
            scale = scale.to(torch.float32)
            if scale.numel() > 1:  # one scale per output row
                scale = scale.reshape(-1, *([1] * (value.dim() - 1)))
            value = (value.to(torch.float32) * scale).to(torch.bfloat16)
        out[key] = value
    return out


def _quant_format(marker) -> str:
    """The "format" of a ``comfy_quant`` marker (UTF-8 JSON stored as a uint8 tensor)."""
    try:
        return str(json.loads(bytes(marker.flatten().tolist()).decode("utf-8")).get("format", ""))
    except (ValueError, AttributeError, TypeError):
        return ""


def gguf_tensors(path: str) -> dict:
    """A GGUF file's tensors as diffusers reads them (quantized ones stay ``GGUFParameter``s)."""
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    return load_single_file_checkpoint(path, local_files_only=True)


def shapes_of(state: dict) -> dict:
    """name -> logical shape (a GGUF parameter's unquantized one)."""
    return {k: tuple(getattr(v, "quant_shape", None) or v.shape) for k, v in state.items()}


def ae16_config(shapes: dict) -> dict:
    """The AutoencoderKL config of the FLUX.1 VAE (original ``ae.safetensors`` names) with these shapes:
    FLUX.1 [dev]'s bundled config, resized; group norms min(32, the narrowest level)."""
    path = resources_dir() / "configs" / "flux1-dev" / "vae" / "config.json"
    return sized_vae_config(json.loads(path.read_text(encoding="utf-8")), shapes)


def sized_vae_config(config: dict, shapes: dict) -> dict:
    """``config`` (a bundled diffusers VAE config) resized to an original-layout (``encoder.down.N…``,
    BFL's / LDM's names) VAE with these shapes: its levels, widths, blocks per level and latent channels;
    group norms min(32, the narrowest level)."""
    config = dict(config)
    levels = count(shapes, r"encoder\.down\.(\d+)\.")
    widths = [shapes[f"encoder.down.{i}.block.0.conv1.weight"][0] for i in range(levels)]
    config.update(block_out_channels=widths, layers_per_block=count(shapes, r"encoder\.down\.0\.block\.(\d+)\."),
                  latent_channels=shapes["decoder.conv_in.weight"][1], norm_num_groups=min(32, min(widths)),
                  down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels)
    return config


def ae16_vae(path: str, prefix: str, dtype):
    """The FLUX.1 VAE in ``path`` (under ``prefix``), converted by diffusers' LDM VAE converter."""
    from diffusers import AutoencoderKL

    state = tensors(path, prefix)
    return from_single_file(AutoencoderKL, state, ae16_config(shapes_of(state)), "vae", dtype)


def from_single_file(cls, state: dict, config: dict, subfolder: str, dtype, **extra):
    """``cls.from_single_file`` of ``state`` (diffusers maps the names with its own converter for
    ``cls``) with ``config`` written to a temporary folder: offline, nothing fetched."""
    with tempfile.TemporaryDirectory(prefix="easel-part-") as tmp:
        folder = Path(tmp) / subfolder
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
        return cls.from_single_file(state, config=tmp, subfolder=subfolder, torch_dtype=dtype,
                                    local_files_only=True, **extra).eval()


def text_encoder(model_cls, config, state: dict, dtype):
    """A transformers text encoder ``model_cls`` with ``config`` and the weights ``state``."""
    return model_cls.from_pretrained(None, config=config, state_dict=state, torch_dtype=dtype).eval()


def transformer(cls, path: str, config_for, dtype, prefix: str = "model.diffusion_model."):
    """The diffusers transformer ``cls`` of a split layout's transformer file ``path``: ``.safetensors``
    (bf16 / fp16, or fp8 as ComfyUI ships it: cast to ``dtype`` as it loads), or GGUF (city96's
    quantized files: kept quantized, each layer computing in ``dtype``, through diffusers'
    ``GGUFQuantizationConfig``). ``config_for(shapes)`` is ``cls``'s config for the tensors' shapes
    (ComfyUI's ``prefix`` taken off); diffusers' own converter for ``cls`` maps the names."""
    extra = {}
    if Path(path).suffix.lower() == ".gguf":
        from diffusers import GGUFQuantizationConfig

        state = gguf_tensors(path)
        extra["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    else:
        state = tensors(path)
    if any(k.startswith(prefix) for k in state):  # ComfyUI's prefix; an all-in-one file's other parts left out
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    # ComfyUI's marker tensors (``__index_timestep_zero__``: a config flag, not a weight) stay out of the model.
    markers = {k for k in state if k.startswith("__")}
    config = config_for(shapes_of(state))
    state = {k: v for k, v in state.items() if k not in markers}
    return from_single_file(cls, state, config, "transformer", dtype, **extra)

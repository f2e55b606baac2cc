"""A tiny autoencoder's decoder (the TAESD family, madebyollin's) from one ``.safetensors`` file, for the
live previews of latent spaces whose tiny decoder diffusers' ``AutoencoderTiny`` cannot express.

TAEF2 (FLUX.2's, ``madebyollin/taef2``'s ``taef2.safetensors``, or ComfyUI's
``models/vae_approx/taef2_decoder.safetensors``) is TAESD's decoder for 32 latent channels whose first
stage's blocks also carry a "mid-block GroupNorm pool" (``x + conv1x1(ReLU(GroupNorm4(conv1x1(x))))``
before the block); ``AutoencoderTiny``'s blocks have no such part, so loading it there would drop those
weights and decode wrongly. The decoder is rebuilt here from the file's tensor names instead: diffusers'
layout (``decoder.layers.N.…``, as madebyollin's Hugging Face repos publish it) or taesd.py's flat one
(``N.…``, one index higher), both read by ``engine.files.tiny``. It decodes the latents the denoiser
works on (FLUX.2: batch-normalised, 2x2-unpatchified to 32 channels) into pixels in [-1, 1], as
``AutoencoderTiny.decode`` does. Never unpickles; engine thread.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.files.tiny import decoder_state


class _PooledBlock(nn.Module):
    """TAESD's block with TAEF2's mid-block pool in front (its tensor names: ``conv.0/2/4``, ``skip``, ``pool.0/1/3``)."""

    def __init__(self, channels: int, pool: int):
        super().__init__()
        from diffusers.models.unets.unet_2d_blocks import AutoencoderTinyBlock

        self.pool = nn.Sequential(nn.Conv2d(channels, pool, 1, bias=False), nn.GroupNorm(4, pool), nn.ReLU(),
                                  nn.Conv2d(pool, channels, 1, bias=False))
        self.block = AutoencoderTinyBlock(channels, channels, "relu")

    def forward(self, x):
        return self.block(x + self.pool(x))


class TinyDecoder(nn.Module):
    """The decoder of a tiny autoencoder as its file lays it out; ``decode(latents)`` -> pixels in [-1, 1]."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        from diffusers.models.unets.unet_2d_blocks import AutoencoderTinyBlock

        by_index: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            by_index.setdefault(int(head), {})[rest] = value
        layers = []
        for i in range(max(by_index) + 1):
            entry = by_index.get(i)
            if entry is None:  # no weights: index 1 is the input conv's ReLU, the others the 2x upsamples
                layers.append(nn.ReLU() if i == 1 else nn.Upsample(scale_factor=2))
            elif "conv.0.weight" in entry:
                out_ch, in_ch = entry["conv.0.weight"].shape[:2]
                if "pool.0.weight" in entry:
                    layers.append(_PooledBlock(out_ch, entry["pool.0.weight"].shape[0]))
                else:
                    layers.append(AutoencoderTinyBlock(in_ch, out_ch, "relu"))
            elif "weight" in entry:
                w = entry["weight"]
                layers.append(nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2,
                                        bias="bias" in entry))
            else:
                raise ValueError(f"unrecognised tiny decoder layer {i}: {sorted(entry)}")
        self.layers = nn.Sequential(*layers)
        # The pooled blocks' tensors sit one level deeper here (``block.``) than in the file.
        pooled = {i for i, e in by_index.items() if "pool.0.weight" in e}
        self.load_state_dict({_nested(k, pooled): v for k, v in state.items()})

    def decode(self, latents):
        x = torch.tanh(latents / 3) * 3  # TAESD's input clamp
        return self.layers(x).mul(2).sub(1)


def _nested(key: str, pooled: set[int]) -> str:
    head, _, rest = key.partition(".")
    if int(head) in pooled and not rest.startswith("pool."):
        rest = "block." + rest
    return f"layers.{head}.{rest}"


def load(path: str, device, dtype) -> TinyDecoder:
    """The tiny decoder in the ``.safetensors`` file ``path``, on ``device`` in ``dtype``. Raises
    ValueError when the file is not one (RuntimeError when its tensors do not fit together)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except SafetensorError as exc:
        raise ValueError(f"{path} cannot be read: {exc}") from exc
    state = decoder_state(tensors)
    if state is None:
        raise ValueError(f"{path} is not a tiny autoencoder's decoder")
    return TinyDecoder(state).to(device=device, dtype=dtype).eval().requires_grad_(False)

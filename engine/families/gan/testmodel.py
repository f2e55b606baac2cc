"""Tiny random-weight GAN upscalers (ESRGAN RRDB, Real-ESRGAN compact) as .safetensors files, built
locally for tests and demos. Calling thread.
"""

from __future__ import annotations

from pathlib import Path


def make_esrgan_test_model(dest: Path, scale: int = 4, seed: int = 0, filters: int = 8, blocks: int = 1) -> Path:
    """Write a tiny random-weight ESRGAN (RRDB) upscaler as one .safetensors file (``dest``, or
    ``dest/tiny-esrgan-x{scale}.safetensors`` when ``dest`` is not a .safetensors name)."""
    import torch

    from engine.testmodels import save_safetensors
    from engine.upscale import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    dest = Path(dest)
    if dest.suffix.lower() != ".safetensors":
        dest = dest / f"tiny-esrgan-x{scale}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_safetensors(dest, ESRGAN(num_filters=filters, num_blocks=blocks, scale=scale).state_dict())
    return dest


def make_compact_test_model(dest: Path, seed: int = 0) -> Path:
    """Write a tiny Real-ESRGAN compact x4 upscaler (SRVGGNetCompact, the realesr-general-x4v3 class)
    as one .safetensors file (``dest``, or ``dest/tiny-realesrgan-compact-x4.safetensors``).

    The architecture adds its learned detail to a nearest-neighbour enlargement of the input; the
    detail branch's last layer is scaled down here, so random weights give the input enlarged with a
    faint texture rather than noise: a demo upscaler whose results look like the image."""
    import torch

    from engine.testmodels import save_safetensors
    from engine.upscale import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    dest = Path(dest)
    if dest.suffix.lower() != ".safetensors":
        dest = dest / "tiny-realesrgan-compact-x4.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=2, upscale=4)
    state = model.state_dict()
    last = max(int(k.split(".")[1]) for k in state if k.startswith("body.") and k.endswith(".weight"))
    state[f"body.{last}.weight"] = state[f"body.{last}.weight"] * 0.02
    state[f"body.{last}.bias"] = torch.zeros_like(state[f"body.{last}.bias"])
    save_safetensors(dest, state)
    return dest

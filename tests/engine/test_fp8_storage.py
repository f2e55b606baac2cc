"""fp8 storage (layerwise casting, engine.core.precision): a transformer and T5 read from fp8 files stay
in fp8 in memory and compute in the run's precision; the "low" rungs on CUDA choose it themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import devices
from engine.api import GenerationRequest
from engine.cli import main


@pytest.fixture(scope="module")
def installs(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny FLUX.1 [dev] in ComfyUI's split layout, and a copy with its transformer and T5 in fp8."""
    import torch
    from safetensors.torch import load_file, save_file

    base = tmp_path_factory.mktemp("fp8")
    root = base / "full" / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "flux1-dev", "--layout", "comfyui"]) == 0
    fp8_root = base / "fp8" / "ComfyUI"
    shutil.copytree(root, fp8_root)
    name = "models/diffusion_models/flux1-dev-tiny.safetensors"
    t5 = fp8_root / "models/text_encoders/t5xxl_fp16.safetensors"
    for path, target in ((fp8_root / name, fp8_root / name), (t5, t5.with_name("t5xxl_fp8_e4m3fn.safetensors"))):
        tensors = load_file(path)
        path.unlink()
        save_file({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in tensors.items()}, str(target))
    return root / name, fp8_root / name


def test_an_fp8_transformer_and_t5_stay_in_fp8_and_make_nearly_the_same_image(installs):
    import torch

    from engine.core.precision import parameter_bytes
    from engine.engine import Engine

    full_file, fp8_file = installs
    engine = Engine(device="cpu")
    request = GenerationRequest(prompt="a red fox", steps=3, width=64, height=64, guidance_scale=3.5, seed=3)
    low = engine.generate(request.replace(model=str(fp8_file)))
    assert low.settings.fp8_storage == ("text_encoder_2", "transformer")
    assert low.settings.precision == "float32, fp8 storage (text_encoder_2, transformer)"
    assert low.settings.to_dict()["fp8_storage"] == ("text_encoder_2", "transformer")
    runner = engine._runner
    transformer = runner.base.transformer
    blocks = [m for name, m in transformer.transformer_blocks.named_modules()
              if isinstance(m, torch.nn.Linear) and "norm" not in name]  # the norms' modulation stays in fp32
    assert blocks and all(m.weight.dtype == torch.float8_e4m3fn for m in blocks)  # stored, not upcast
    assert sum(parameter_bytes(m) for m in blocks) == sum(p.numel() for m in blocks for p in m.parameters())
    # one byte a weight: a quarter of fp32
    # The whole transformer (norms, embeddings, the in/out projections kept in fp32) under half of fp32's:
    all_count = sum(p.numel() for p in transformer.parameters())
    assert parameter_bytes(transformer) < 0.5 * 4 * all_count
    assert runner.base.text_encoder_2.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float8_e4m3fn

    full = engine.generate(request.replace(model=str(full_file)))
    assert full.settings.fp8_storage == ()  # a full-precision file is not rounded on the CPU
    a = np.asarray(low.images[0]).astype(int)
    b = np.asarray(full.images[0]).astype(int)
    assert np.isfinite(a).all() and a.std() > 5  # not black, not flat
    assert np.abs(a - b).mean() < 4.0  # the same model, its weights rounded to fp8


def test_the_low_rungs_on_cuda_keep_transformer_and_t5_in_fp8():
    assert [devices.fp8_by_preset(p, "cuda") for p in ("fast", "balanced", "low", "minimal")] == \
        [False, False, True, True]
    assert not any(devices.fp8_by_preset(p, "cpu") for p in ("fast", "balanced", "low", "minimal"))


def test_dropping_to_a_low_rung_puts_a_full_precision_transformer_in_fp8(installs, monkeypatch):
    """The out-of-memory ladder's step to "low" casts the transformer and T5 (what CUDA does; on this
    CPU-only machine the device check is what is stood in for)."""
    import torch

    from engine.core import placement
    from engine.families.flux import testmodel

    monkeypatch.setattr(devices, "fp8_by_preset", lambda preset, device: preset in ("low", "minimal"))
    from diffusers import FluxPipeline

    pipe = FluxPipeline(**testmodel.tiny_components("dev"))
    where = placement.Placement("cpu", torch.float32)
    assert where.place_new([pipe], "balanced").fp8_storage == ()
    calls = []

    def job():
        calls.append(where.settings.preset)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("out of memory")
        return pipe.transformer.transformer_blocks[0].attn.to_q.weight.dtype

    notices: list[str] = []
    assert where.run(job, [pipe], notices) == torch.float8_e4m3fn
    assert calls == ["balanced", "low"]
    assert where.settings.preset == "low" and where.settings.fp8_storage == ("text_encoder_2", "transformer")
    assert "low" in notices[0]

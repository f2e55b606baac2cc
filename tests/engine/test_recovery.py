"""Recovery: out of memory walks down the preset ladder and remembers; NaN decodes rerun the VAE in fp32
and never give a silent black image; tiny-autoencoder previews; no network outside a download."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.api import EaselError, GenerationRequest, OutOfMemory


def _req(model, **kw):
    base = dict(prompt="a red fox in snow", model=str(model), seed=42, steps=2, width=64, height=64, sampler="Euler")
    base.update(kw)
    return GenerationRequest(**base)


class OutOfMemoryOnce:
    """Test double for a CUDA card that is too small: the UNet raises torch.cuda.OutOfMemoryError
    while the model runs on a preset above ``fits``, as a real card does."""

    def __init__(self, engine, fits: str | None):
        import torch

        self.engine, self.fits, self.raised = engine, fits, []
        unet = engine.runner.base.unet
        self.original = unet.forward
        order = ("fast", "balanced", "low", "minimal")

        def forward(*args, **kwargs):
            preset = engine.runner.settings.preset
            if self.fits is None or order.index(preset) < order.index(self.fits):
                self.raised.append(preset)
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
            return self.original(*args, **kwargs)

        unet.forward = forward

    def remove(self):
        self.engine.runner.base.unet.forward = self.original


def test_out_of_memory_retries_lower_and_remembers_the_rung(tiny_models, tmp_path):
    from engine.engine import Engine

    model = tiny_models.get()
    engine = Engine(device="cpu", state_dir=tmp_path)
    engine.load(str(model), "fast")
    double = OutOfMemoryOnce(engine, fits="low")
    result = engine.generate(_req(model, memory_preset="fast"))
    assert double.raised == ["fast", "balanced"]  # the same job, two rungs down
    assert result.settings.preset == "low" and result.images[0].size == (64, 64)
    assert "ran out of memory" in result.notices[0] and "“low”" in result.notices[0]
    saved = json.loads((tmp_path / "memory-presets.json").read_text())
    assert list(saved.values()) == ["low"]
    double.remove()

    # Next time (a new process: a new Engine), "auto" starts on the rung that worked.
    fresh = Engine(device="cpu", state_dir=tmp_path)
    again = fresh.generate(_req(model, memory_preset="auto"))
    assert again.settings.preset == "low" and not again.notices


def test_out_of_memory_on_the_last_rung_is_one_clear_error_and_the_engine_stays_ready(tiny_models, tmp_path):
    from engine.engine import Engine

    model = tiny_models.get()
    engine = Engine(device="cpu", state_dir=tmp_path)
    engine.load(str(model), "balanced")
    double = OutOfMemoryOnce(engine, fits=None)
    with pytest.raises(OutOfMemory) as info:
        engine.generate(_req(model, memory_preset="balanced"))
    assert double.raised == ["balanced", "low", "minimal"]
    assert "\n" not in str(info.value) and "lowest memory preset" in str(info.value)
    assert engine.runtime.preset == "balanced"  # back where it was
    assert not (tmp_path / "memory-presets.json").exists()
    double.remove()
    assert engine.generate(_req(model, memory_preset="balanced")).images  # ready for the next job


class NanDecoder:
    """Makes the VAE decoder output NaN for real whenever it runs in ``bad_dtype`` (a forward hook)."""

    def __init__(self, vae, bad_dtype):
        import torch

        self.calls = []

        def hook(module, args, output):
            self.calls.append(output.dtype)
            if bad_dtype is None or output.dtype == bad_dtype:
                return torch.full_like(output, float("nan"))
            return output

        self.handle = vae.decoder.register_forward_hook(hook)


@pytest.fixture
def half_vae_engine(tiny_models):
    """An engine whose VAE runs in fp16 (as on a GPU); fp16 convolutions work on this CPU too."""
    import torch

    from engine.engine import Engine

    engine = Engine(device="cpu")
    engine.load(str(tiny_models.get()))
    vae = engine.runner.base.vae
    vae.to(torch.float16)
    yield engine
    vae.to(torch.float32)


def test_nan_decode_reruns_the_vae_in_fp32(half_vae_engine, tiny_models):
    import torch

    model = tiny_models.get()
    nan = NanDecoder(half_vae_engine.runner.base.vae, torch.float16)
    try:
        result = half_vae_engine.generate(_req(model))
    finally:
        nan.handle.remove()
    assert nan.calls == [torch.float16, torch.float32]
    pixels = np.asarray(result.images[0])
    assert pixels.std() > 1  # a real image, not a flat black one
    assert any("full precision" in n for n in result.notices)
    assert half_vae_engine.runner.base.vae.dtype == torch.float16  # back to half for the next job


def test_nan_in_full_precision_too_is_an_error_not_a_black_image(half_vae_engine, tiny_models):
    model = tiny_models.get()
    nan = NanDecoder(half_vae_engine.runner.base.vae, None)
    try:
        with pytest.raises(EaselError) as info:
            half_vae_engine.generate(_req(model))
    finally:
        nan.handle.remove()
    assert "blank" in str(info.value) and "\n" not in str(info.value)
    assert half_vae_engine.generate(_req(model)).images


def test_previews_use_a_local_tiny_autoencoder(tiny_models, tmp_path):
    from engine.engine import Engine
    from engine.models import ModelLibrary
    from engine.testaddons import make_taesd

    make_taesd(tmp_path / "taesd")
    lib = ModelLibrary([str(tmp_path)], include_defaults=False)
    assert [e.kind for e in lib.scan()] == ["taesd"]
    engine = Engine(device="cpu", library=lib, preview_every=1)
    previews = []
    engine.generate(_req(tiny_models.get()), on_progress=lambda p: previews.append(p.preview))
    assert engine.runner.previews.tiny.folder == str(tmp_path / "taesd")
    assert all(p is not None and p.size == (64, 64) for p in previews)

    plain = Engine(device="cpu", library=ModelLibrary([], include_defaults=False), preview_every=1)
    plain.generate(_req(tiny_models.get()), on_progress=lambda p: None)
    assert plain.runner.previews.tiny is False  # none on disk: the latent approximation


def test_no_network_outside_an_explicit_download(tiny_models, tmp_path, no_network):
    from engine.engine import Engine
    from engine.models import ModelLibrary
    from engine.outputs import save_result
    from engine.testaddons import make_lora

    make_lora(tmp_path / "Lora" / "ink.safetensors")
    lib = ModelLibrary([str(tmp_path)], include_defaults=True)
    lib.scan()
    engine = Engine(device="cpu", library=lib)
    result = engine.generate(_req(tiny_models.get("sd15", single_file=True), prompt="a fox <lora:ink:0.5>"))
    save_result(result, tmp_path / "out")
    assert no_network == []

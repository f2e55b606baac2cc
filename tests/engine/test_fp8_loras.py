"""LoRAs on a transformer in fp8 storage (engine.core.precision's layerwise casting, engine.core.loras):
a FLUX.1 and a FLUX.2 [klein] model whose transformer file holds fp8 weights (kept in fp8 on the CPU)
take a LoRA that changes the image as it does on the full-precision model, is recorded in the metadata
with the fp8 storage, and leaves the model's own pixels when the prompt drops it. The LoRA's layers stay
in the run's precision, whether the LoRA came before fp8 storage (the ladder's "low" rung) or after."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.api import GenerationRequest
from engine.testloras import make_transformer_lora


def _fp8_copy(model: Path, dest: Path) -> Path:
    """``model`` with its transformer's weight matrices stored as float8_e4m3fn (an fp8 checkpoint)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, dest)
    for path in (dest / "transformer").glob("*.safetensors"):
        tensors = load_file(path)
        save_file({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in tensors.items()}, str(path))
    return dest


def _flux1(dest):
    from engine.families.flux.testmodel import make_flux_test_model

    return make_flux_test_model(dest)


def _flux2(dest):
    from engine.families.flux2.testmodel import make_flux2_test_model

    return make_flux2_test_model(dest)


@pytest.fixture(scope="module", params=[(_flux1, "kohya"), (_flux2, "diffusers")], ids=["flux1-kohya", "flux2-diffusers"])
def family(request, tmp_path_factory):
    make, layout = request.param
    root = tmp_path_factory.mktemp("fp8-loras")
    model = make(root / "model")
    make_transformer_lora(root / "loras" / "ink.safetensors", model, layout, seed=1)
    return model, _fp8_copy(model, root / "model-fp8"), root / "loras"


def _engine(loras: Path):
    from engine.engine import Engine
    from engine.models import ModelLibrary

    return Engine(device="cpu", library=ModelLibrary([str(loras)], include_defaults=False))


def _run(engine, model: Path, prompt: str, **kw):
    result = engine.generate(GenerationRequest(prompt=prompt, model=str(model), seed=3, steps=2, width=64, height=64,
                                               **kw))
    return np.asarray(result.images[0].convert("RGB")).astype(int), result


def _lora_dtypes(transformer) -> set:
    return {p.dtype for name, p in transformer.named_parameters() if ".lora_" in name}


def test_a_lora_on_an_fp8_transformer_changes_the_image_and_is_recorded(family, tmp_path):
    import torch

    from engine.metadata import read_metadata
    from engine.outputs import save_result

    model, fp8_model, loras = family
    engine = _engine(loras)
    full_styled, _ = _run(engine, model, "a lighthouse <lora:ink:0.9>")

    plain, result = _run(engine, fp8_model, "a lighthouse")
    assert result.settings.fp8_storage == ("transformer",)
    styled, result = _run(engine, fp8_model, "a lighthouse <lora:ink:0.9>")
    assert not result.notices and result.settings.fp8_storage == ("transformer",)
    assert np.abs(styled - plain).mean() > 1  # the LoRA shows on the fp8 model
    assert np.abs(styled - full_styled).mean() < 4  # as it does on the full-precision one
    transformer = engine.runner.base.transformer
    assert transformer.transformer_blocks[0].attn.to_q.base_layer.weight.dtype == torch.float8_e4m3fn
    assert _lora_dtypes(transformer) == {torch.float32}  # the LoRA itself is neither rounded to fp8 nor run in it

    saved = read_metadata(save_result(result, tmp_path)[0])
    assert saved.extra["Lora hashes"].startswith("ink: ") and "<lora:ink:0.9>" in saved.fields["prompt"]
    assert "fp8 storage (transformer)" in result.settings.precision

    again, result = _run(engine, fp8_model, "a lighthouse")
    assert np.array_equal(again, plain) and "Lora hashes" not in dict(result.params)  # removed: the model's own pixels


def test_a_lora_loaded_before_the_low_rung_stays_in_the_runs_precision(family, monkeypatch):
    """The ladder's "low" rung puts a full-precision transformer in fp8 storage (on CUDA; the device check
    is stood in for here) after a LoRA was loaded into it: its adapter layers are not cast."""
    import torch

    from engine import devices

    model, _fp8_model, loras = family
    monkeypatch.setattr(devices, "fp8_by_preset", lambda preset, device: preset in ("low", "minimal"))
    engine = _engine(loras)
    plain, _ = _run(engine, model, "a lighthouse", memory_preset="balanced")
    styled, result = _run(engine, model, "a lighthouse <lora:ink:0.9>", memory_preset="balanced")
    assert result.settings.fp8_storage == ()
    low, result = _run(engine, model, "a lighthouse <lora:ink:0.9>", memory_preset="low")
    assert "transformer" in result.settings.fp8_storage and not result.notices  # (and FLUX.1's T5)
    transformer = engine.runner.base.transformer
    assert transformer.transformer_blocks[0].attn.to_q.base_layer.weight.dtype == torch.float8_e4m3fn
    assert _lora_dtypes(transformer) == {torch.float32}
    assert np.abs(low - styled).mean() < 4 and np.abs(low - plain).mean() > 1

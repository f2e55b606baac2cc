"""What "auto" plans for a GGUF transformer: its file's size on the GPU, not the bf16 size the
family's thresholds were computed for (engine.devices.thresholds_for). A user with a 12 GB card and a
Q4 FLUX.1 gets model offload, not layer-by-layer streaming; bf16 files plan as before."""

from __future__ import annotations

import dataclasses

import pytest

from engine import families
from engine.api import ModelInfo
from engine.devices import resolve_preset
from engine.files.probe import check_model


def _auto(family: str, fmt: str, size_gb: float, free_gib: float, variant: str = "") -> str:
    info = ModelInfo(f"/models/x.{fmt}", "x", "checkpoint", family, fmt, prediction_type="flow",
                     size_bytes=int(size_gb * 1e9), variant=variant)
    return resolve_preset("auto", "cuda", families.capabilities(info).memory_thresholds, free_gib=free_gib)


def test_a_q4_flux_on_a_12_gb_card_offloads_models_instead_of_streaming_layers():
    assert _auto("flux1", "gguf", 6.8, 11.0, "dev") == "low"  # flux1-dev-Q4_K_S.gguf
    assert _auto("flux1", "safetensors", 23.8, 11.0, "dev") == "minimal"  # the bf16 file: as before


def test_a_q8_flux_fits_whole_on_a_24_gb_card():
    assert _auto("flux1", "gguf", 12.7, 23.0, "dev") == "balanced"  # flux1-dev-Q8_0.gguf
    assert _auto("flux1", "safetensors", 23.8, 23.0, "dev") == "low"


def test_a_q4_qwen_image_runs_with_offload_on_a_24_gb_card():
    assert _auto("qwen_image", "gguf", 13.1, 23.0) == "low"  # qwen-image-Q4_K_M.gguf
    assert _auto("qwen_image", "safetensors", 41.0, 23.0) == "minimal"


def test_where_the_text_encoder_is_the_largest_part_low_needs_what_it_did():
    bf16 = dict(_thresholds("zimage", "safetensors", 12.3))
    gguf = dict(_thresholds("zimage", "gguf", 3.6))  # z_image_turbo-Q4_K_M.gguf
    assert gguf["low"] == bf16["low"] == 10.0  # the 8 GB Qwen3 encoder still has to fit
    assert gguf["fast"] == pytest.approx(bf16["fast"] - 12.3 + 3.6, abs=0.05)


def _thresholds(family: str, fmt: str, size_gb: float, variant: str = ""):
    info = ModelInfo("/models/x", "x", "checkpoint", family, fmt, size_bytes=int(size_gb * 1e9), variant=variant)
    return families.capabilities(info).memory_thresholds


@pytest.mark.parametrize("family, variant, bf16_gb", [
    ("flux1", "dev", 23.8), ("flux2", "distilled-4b", 7.7), ("flux2", "distilled-9b", 18.1), ("flux2", "dev", 64.4),
    ("sd3", "large", 16.3), ("sd3", "medium", 4.9), ("zimage", "turbo", 12.3), ("qwen_image", "", 41.0)])
@pytest.mark.parametrize("fraction", [0.001, 0.28, 0.53, 0.6])  # from a tiny file to Q8 and beyond fp8
def test_every_gguf_family_plans_in_order_and_never_above_its_bf16_file(family, variant, bf16_gb, fraction):
    gguf = _thresholds(family, "gguf", bf16_gb * fraction, variant)
    bf16 = _thresholds(family, "safetensors", bf16_gb, variant)
    assert [p for p, _ in gguf] == [p for p, _ in bf16]
    needs = [need for _, need in gguf]
    assert needs == sorted(needs, reverse=True) and all(n > 0 for n in needs)  # a lower preset never needs more
    assert all(g < b for (_, g), (_, b) in zip(gguf, bf16) if _ != "low")  # whole-model presets need less
    if fraction <= 0.28:
        assert dict(gguf)["low"] <= dict(bf16)["low"]


def test_the_probe_tells_a_gguf_file_and_its_size(tmp_path):
    _f, flux = families.test_models()["flux1-dev"]
    transformer = flux.write(tmp_path / "comfy", "gguf", 0)
    info = check_model(transformer)
    assert info.format == "gguf" and info.size_bytes == transformer.stat().st_size
    as_bf16 = dataclasses.replace(info, format="safetensors")
    assert dict(families.capabilities(info).memory_thresholds)["fast"] < dict(
        families.capabilities(as_bf16).memory_thresholds)["fast"] - 20  # the tiny file, not 23.8 GB of bf16

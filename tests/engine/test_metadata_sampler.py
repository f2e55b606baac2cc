"""A model with its own schedule (FLUX, aMUSEd, DeepFloyd IF) records no sampler: neither a
"Sampler:" in the A1111 text nor a sampler in the easel JSON that `easel info` would show."""

from __future__ import annotations

import dataclasses
import io
import json

from PIL import Image

from engine.api import GenerationRequest, ModelInfo, Result, RuntimeSettings, Timings
from engine.metadata import png_info, read_metadata


def _saved(uses_sampler: bool, tmp_path):
    request = GenerationRequest(prompt="a lighthouse", seed=9, steps=4, sampler="DPM++ 2M Karras", width=64, height=64)
    result = Result(images=(Image.new("RGB", (64, 64)),), seeds=(9,), request=request,
                    model=ModelInfo("/m/flux", "flux", "checkpoint", "flux1", "diffusers"), model_hash="0123456789",
                    settings=RuntimeSettings(device="cpu", dtype="float32", preset="fast"), timings=Timings())
    result = dataclasses.replace(result, uses_sampler=uses_sampler)
    path = tmp_path / f"{uses_sampler}.png"
    result.images[0].save(path, pnginfo=png_info(result, 0, app_version="0.1.0"))
    return read_metadata(path)


def test_no_sampler_is_recorded_for_a_model_that_uses_none(tmp_path):
    meta = _saved(False, tmp_path)
    assert "Sampler:" not in meta.raw["parameters"] and "Schedule type:" not in meta.raw["parameters"]
    assert "sampler" not in json.loads(meta.raw["easel"])["request"]
    assert meta.fields["steps"] == 4 and meta.fields["seed"] == 9
    assert meta.to_request(model="/m/flux").steps == 4  # still a request that runs


def test_a_sampler_model_still_records_its_sampler(tmp_path):
    meta = _saved(True, tmp_path)
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in meta.raw["parameters"]
    assert json.loads(meta.raw["easel"])["request"]["sampler"] == "DPM++ 2M Karras"

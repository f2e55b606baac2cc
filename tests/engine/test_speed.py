"""The speed setting (Standard / Fast / Draft) end to end on the CPU, and the GPU check's tiny run.

One Engine and one data folder for the module: Fast compiles the tiny model once (inductor's C++
backend), and the GPU check's tiny run reuses that compiler cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.api import GenerationRequest, InvalidRequest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speed-data")


@pytest.fixture(scope="module")
def engine(data_dir):
    from engine.engine import Engine

    return Engine(device="cpu", state_dir=data_dir)


def _request(model, **kw) -> GenerationRequest:
    fields = dict(prompt="a red barn in snow", negative_prompt="blurry", model=str(model), seed=42, steps=3,
                  width=64, height=64)
    return GenerationRequest(**{**fields, **kw})


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


def test_speed_is_validated_and_carried_by_the_recipe():
    with pytest.raises(InvalidRequest) as err:
        GenerationRequest(prompt="x", speed="turbo")
    assert err.value.field == "speed"
    request = GenerationRequest(prompt="x", speed="draft")
    assert GenerationRequest.from_dict(request.to_dict()).speed == "draft"
    assert GenerationRequest(prompt="x").speed == "standard"


def test_fast_gives_the_standard_pixels_and_keeps_its_compiler_cache_in_the_data_folder(
        engine, tiny_models, data_dir, tmp_path):
    from engine.core.speed import COMPILE_STATUS
    from engine.metadata import read_metadata
    from engine.outputs import save_image

    model = tiny_models.get("sd15")
    standard = engine.generate(_request(model))
    events = []
    fast = engine.generate(_request(model, speed="fast"), on_progress=events.append)

    assert fast.notices == ()
    # Within fp tolerance: compiled kernels sum in another order.
    diff = np.abs(_pixels(fast) - _pixels(standard))
    assert diff.max() <= 4 and diff.mean() < 0.5
    # The status line comes before the first step, and only for the first job of this size.
    assert events[0].step == 0 and events[0].stage_name == COMPILE_STATUS
    assert [e.step for e in events[1:]] == [1, 2, 3]
    again = []
    engine.generate(_request(model, speed="fast", seed=7), on_progress=again.append)
    assert all(e.stage_name != COMPILE_STATUS for e in again)
    # inductor's cache (what a restart reuses) is in Easel's data folder.
    cache = data_dir / "compile-cache" / "inductor"
    assert any(p.is_file() for p in cache.rglob("*"))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache)

    path = save_image(fast, 0, tmp_path / "fast.png", embed_metadata=True)
    meta = read_metadata(path)
    assert "Speed: fast" in meta.raw["parameters"]
    assert meta.fields["speed"] == "fast"
    assert json.loads(meta.raw["easel"])["request"]["speed"] == "fast"

    # Back to Standard: the model as loaded, the same image as before.
    back = engine.generate(_request(model))
    assert np.array_equal(_pixels(back), _pixels(standard))
    assert back.params == standard.params


def test_draft_is_labelled_in_the_metadata_and_comes_off_again(engine, tiny_models, tmp_path):
    from engine.metadata import read_metadata
    from engine.outputs import save_image

    model = tiny_models.get("sd15")
    standard = engine.generate(_request(model, steps=4))
    draft = engine.generate(_request(model, steps=4, speed="draft"))
    assert ("Speed", "draft (Pyramid Attention Broadcast)") in draft.params
    path = save_image(draft, 0, tmp_path / "draft.png", embed_metadata=True)
    meta = read_metadata(path)
    assert "Speed: draft (Pyramid Attention Broadcast)" in meta.raw["parameters"]
    assert meta.fields["speed"] == "draft"
    # The same file read as plain A1111 text (another tool's copy) still says Draft.
    from engine.metadata.a1111 import parse_a1111

    assert parse_a1111(meta.raw["parameters"]).fields["speed"] == "draft"
    # A second Draft image starts with an empty step cache: it is the same image again.
    assert np.array_equal(_pixels(engine.generate(_request(model, steps=4, speed="draft"))), _pixels(draft))
    back = engine.generate(_request(model, steps=4))
    assert np.array_equal(_pixels(back), _pixels(standard))


def test_a_compile_failure_falls_back_to_standard_with_a_notice(tiny_models, tmp_path):
    """No C++ compiler (CXX points nowhere): the CLI still makes the Standard image, says so once."""
    from engine.metadata import read_metadata

    model = tiny_models.get("sd15")
    env = {**os.environ, "CXX": "/nonexistent/c++", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "engine.cli", "generate", "--model", str(model), "--prompt", "a red barn in snow",
            "--negative", "blurry", "--seed", "42", "--steps", "2", "--width", "64", "--height", "64",
            "--data-dir", str(tmp_path / "data")]
    fast = subprocess.run(args + ["--speed", "fast", "--out", str(tmp_path / "fast.png")], env=env,
                          capture_output=True, text=True, timeout=900)
    assert fast.returncode == 0, fast.stderr
    notes = [line for line in fast.stderr.splitlines() if line.startswith("easel: note:")]
    assert len(notes) == 1 and "Standard speed" in notes[0] and "compile" in notes[0], fast.stderr
    assert "Traceback" not in fast.stderr
    standard = subprocess.run(args + ["--out", str(tmp_path / "standard.png")], env=env, capture_output=True,
                              text=True, timeout=900)
    assert standard.returncode == 0, standard.stderr
    from PIL import Image

    a = np.asarray(Image.open(tmp_path / "fast.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "standard.png"), dtype=np.int16)
    # The failing first step ran the blocks eagerly with Fast's fused QKV still on: fp tolerance.
    assert np.abs(a - b).max() <= 4 and np.abs(a - b).mean() < 0.5
    # What ran was Standard, and the metadata says so.
    assert "Speed" not in read_metadata(tmp_path / "fast.png").raw["parameters"]


def test_gpu_check_tiny_run_writes_its_json(data_dir, tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "bench/gpu/check.py", "--tiny", "--models", "sd15", "--out", str(out),
                          "--data-dir", str(data_dir), "--budget-s", "3000"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["tiny"] is True and report["pyside6_imported"] is False
    sd15 = report["models"]["sd15"]
    assert set(sd15["it_s"]) == {"raw", "standard", "fast", "draft"}
    assert all(rate > 0 for rate in sd15["it_s"].values())
    assert sd15["speed_params"]["fast"] == {"Speed": "fast"}
    assert sd15["speed_params"]["draft"] == {"Speed": "draft (Pyramid Attention Broadcast)"}
    assert set(sd15["peak_vram_gib"]) == {"fast", "balanced", "low", "minimal"}
    assert "sd15" in run.stdout and "it/s" in run.stdout


def test_draft_on_a_transformer_is_first_block_cache_and_skips_the_other_blocks():
    """A DiT family (FLUX.1 blocks, tiny widths) under a pipeline that names its passes."""
    from types import SimpleNamespace

    import torch
    from diffusers import FluxTransformer2DModel

    from engine.core import speed

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                         pooled_projection_dim=8, axes_dims_rope=(2, 2, 4)).eval()

    class FluxLikePipeline:  # the shape of diffusers' FluxPipeline.__call__ that First Block Cache needs
        def __init__(self, transformer):
            self.transformer = transformer

        def __call__(self, **inputs):
            with self.transformer.cache_context("cond"):
                return self.transformer(**inputs, return_dict=False)[0]

    pipe = FluxLikePipeline(transformer)
    inputs = dict(hidden_states=torch.randn(1, 16, 4), encoder_hidden_states=torch.randn(1, 4, 16),
                  pooled_projections=torch.randn(1, 8), timestep=torch.tensor([0.5]), img_ids=torch.zeros(16, 3),
                  txt_ids=torch.zeros(4, 3))
    request = SimpleNamespace(speed="draft", width=64, height=64, guidance_scale=1.0, steps=2)
    params: list = []
    applied = speed.apply(pipe, request, "cpu", params=params)
    assert applied.label == "draft (First Block Cache)" and params == [("Speed", "draft (First Block Cache)")]
    calls = []
    # Inside the last block (the cache wraps the blocks' forward, so a hook on a block itself still fires).
    transformer.single_transformer_blocks[-1].proj_out.register_forward_hook(lambda *_: calls.append(1))
    with torch.inference_mode():
        first = pipe(**inputs)
        second = pipe(**inputs)  # the same input: the first block's residual says "reuse the rest"
    assert len(calls) == 1
    assert torch.allclose(first, second, atol=1e-5)
    speed.apply(pipe, SimpleNamespace(**{**vars(request), "speed": "standard"}), "cpu")
    with torch.inference_mode():
        pipe(**inputs)
    assert len(calls) == 2 and not transformer.is_cache_enabled

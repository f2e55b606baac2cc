"""Z-Image from ComfyUI's split layout: the transformer (Tongyi-MAI's names under ComfyUI's prefix; bf16,
fp8 or GGUF) with qwen_3_4b and the FLUX.1 ae.safetensors found from their headers, each missing part
named in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import families
from engine.api import GenerationRequest, ModelError
from engine.cli import main
from engine.files import split
from engine.files.headers import read_header
from engine.files.probe import check_model, inspect_model


@pytest.fixture(scope="module")
def comfy(tmp_path_factory) -> Path:
    """A ComfyUI install holding the tiny Z-Image Turbo in its split layout; returns the transformer file."""
    root = tmp_path_factory.mktemp("zimage-comfy") / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "zimage-turbo", "--layout", "comfyui"]) == 0
    return root / "models" / "diffusion_models" / "z_image_turbo-tiny.safetensors"


@pytest.fixture(scope="module")
def engine():
    from engine.engine import Engine

    return Engine(device="cpu")


def _copy_install(comfy: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    shutil.copytree(comfy.parents[2], root)
    return root / "models" / "diffusion_models" / comfy.name


def _request(path, **changes) -> GenerationRequest:
    return GenerationRequest(prompt="a red fox in the snow", model=str(path), seed=5, steps=2, width=64, height=64,
                             guidance_scale=0.0, **changes)


def test_each_part_is_named_from_its_header_alone(comfy):
    found = {p.name: split.identify(read_header(p)) for p in comfy.parents[1].rglob("*.safetensors")}
    assert {name: (part.role, part.arch) for name, part in found.items()} == {
        "z_image_turbo-tiny.safetensors": ("transformer", "zimage"), "qwen_3_4b.safetensors": ("text_encoder", "qwen3"),
        "ae.safetensors": ("vae", "ae16")}
    assert found["z_image_turbo-tiny.safetensors"].variant == "turbo"


def test_the_split_layout_generates_as_z_image_turbo(comfy, engine):
    info = check_model(comfy)
    assert (info.family, info.kind, info.variant) == ("zimage", "checkpoint", "turbo")
    assert families.capabilities(info).label.startswith("Z-Image Turbo")
    result = engine.generate(_request(comfy))
    pixels = np.asarray(result.images[0])
    assert result.images[0].size == (64, 64) and pixels.std() > 1  # an image, not a flat field
    again = engine.generate(_request(comfy))
    assert np.array_equal(pixels, np.asarray(again.images[0]))  # the same seed, the same pixels


@pytest.mark.parametrize("missing, says", [("text_encoders/qwen_3_4b.safetensors", "qwen_3_4b.safetensors"),
                                           ("vae/ae.safetensors", "ae.safetensors")])
def test_a_missing_part_is_named_with_where_it_goes(comfy, tmp_path, missing, says):
    transformer = _copy_install(comfy, tmp_path)
    (transformer.parents[1] / missing).unlink()
    with pytest.raises(ModelError) as caught:
        check_model(transformer)
    line = str(caught.value)
    assert says in line and str(transformer.parents[1] / missing.split("/")[0]) in line and "\n" not in line


def test_a_missing_tokenizer_says_which_files_to_add(comfy, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    transformer = _copy_install(comfy, tmp_path)
    shutil.rmtree(transformer.parents[2] / "comfy")
    info = inspect_model(transformer)
    assert "Qwen3 tokenizer" in info.problem and "vocab.json + merges.txt" in info.problem


def test_fp8_and_gguf_transformers_generate(comfy, tmp_path, engine):
    """ComfyUI's fp8 download (read and computed in the run's dtype) and city96's GGUF (kept quantized)."""
    import torch
    from safetensors.torch import load_file, save_file

    full = np.asarray(engine.generate(_request(comfy)).images[0]).astype(float)
    transformer = _copy_install(comfy, tmp_path / "fp8")
    fp8 = transformer.with_name("z_image_turbo_fp8_e4m3fn-tiny.safetensors")
    tensors = load_file(str(transformer))
    save_file({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 and k.endswith(".weight") else v
               for k, v in tensors.items()}, str(fp8))
    transformer.unlink()
    assert read_header(fp8).tensors["model.diffusion_model.layers.0.attention.qkv.weight"].dtype == "F8_E4M3"
    low = np.asarray(engine.generate(_request(fp8)).images[0]).astype(float)
    assert low.std() > 1 and np.abs(low - full).mean() < 40  # fp8 rounding of the same model

    root = tmp_path / "gguf" / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "zimage-turbo", "--layout", "gguf"]) == 0
    gguf_file = root / "models" / "diffusion_models" / "z_image_turbo-tiny-Q8_0.gguf"
    info = check_model(gguf_file)
    assert (info.family, info.format, info.variant) == ("zimage", "gguf", "turbo")
    result = engine.generate(_request(gguf_file))
    quantized = [p for p in engine.runner.base.transformer.parameters() if type(p).__name__ == "GGUFParameter"]
    assert quantized, "the GGUF transformer was dequantized on load"
    assert np.asarray(result.images[0]).std() > 1

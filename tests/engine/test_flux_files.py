"""FLUX.1 files recognised from their headers (never as SD, and SD never as FLUX), and ComfyUI's
split layout assembled into one model, or the missing part named in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import GenerationRequest, ModelError
from engine.cli import main
from engine.files import split
from engine.files.headers import read_header
from engine.files.probe import check_model, inspect_model


@pytest.fixture(scope="module")
def comfy(tmp_path_factory) -> Path:
    """A ComfyUI install holding the tiny FLUX.1 [dev] in its split layout; returns the transformer file."""
    root = tmp_path_factory.mktemp("flux-comfy") / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "flux1-dev", "--layout", "comfyui"]) == 0
    return root / "models" / "diffusion_models" / "flux1-dev-tiny.safetensors"


@pytest.fixture(scope="module")
def sd_file(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("sd") / "sd15.safetensors"
    assert main(["make-test-model", str(dest), "--family", "sd15", "--layout", "single-file"]) == 0
    return dest


def _copy_install(comfy: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    shutil.copytree(comfy.parents[2], root)
    return root / "models" / "diffusion_models" / comfy.name


def test_each_part_is_named_from_its_header_alone(comfy):
    models = comfy.parents[1]
    found = {p.name: split.identify(read_header(p)) for p in models.rglob("*.safetensors")}
    assert {name: (part.role, part.arch) for name, part in found.items()} == {
        "flux1-dev-tiny.safetensors": ("transformer", "flux1"), "clip_l.safetensors": ("text_encoder", "clip_l"),
        "t5xxl_fp16.safetensors": ("text_encoder", "t5xxl"), "ae.safetensors": ("vae", "ae16")}
    assert found["flux1-dev-tiny.safetensors"].variant == "dev"


def test_split_layout_generates_the_same_pixels_as_the_diffusers_folder(comfy, tmp_path):
    from engine.engine import Engine

    info = check_model(comfy)
    assert (info.family, info.kind, info.variant, info.format) == ("flux1", "checkpoint", "dev", "safetensors")
    folder = tmp_path / "folder"
    assert main(["make-test-model", str(folder), "--family", "flux1-dev"]) == 0  # the same tiny model
    # The tiny T5 tokenizer is trained afresh by each build and its ties break differently from run to
    # run (engine.testencoders): give the folder the very tokenizer the split layout has.
    shutil.rmtree(folder / "tokenizer_2")
    shutil.copytree(comfy.parents[2] / "comfy" / "text_encoders" / "t5_tokenizer", folder / "tokenizer_2")
    engine = Engine(device="cpu")
    request = GenerationRequest(prompt="a red fox", steps=3, width=64, height=64, guidance_scale=3.5, seed=3)
    a = engine.generate(request.replace(model=str(comfy)))
    b = engine.generate(request.replace(model=str(folder)))
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))


def test_schnell_with_comfyuis_prefix_through_the_cli(tmp_path, capsys):
    root = tmp_path / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "flux1-schnell", "--layout", "comfyui"]) == 0
    transformer = root / "models" / "diffusion_models" / "flux1-schnell-tiny.safetensors"
    assert all(k.startswith("model.diffusion_model.") for k in read_header(transformer).tensors)
    assert check_model(transformer).variant == "schnell"
    out = tmp_path / "s.png"
    assert main(["generate", "--model", str(transformer), "--prompt", "a fox", "--width", "64", "--height", "64",
                 "--seed", "1", "--out", str(out)]) == 0
    assert Image.open(out).size == (64, 64)
    assert "Steps: 4," in Image.open(out).text["parameters"]  # schnell's own default


@pytest.mark.parametrize("part,line", [
    ("text_encoders/t5xxl_fp16.safetensors", "needs a T5-XXL text encoder: put t5xxl_fp16.safetensors in {models}/text_encoders"),
    ("text_encoders/clip_l.safetensors", "needs a CLIP-L text encoder: put clip_l.safetensors in {models}/text_encoders"),
    ("vae/ae.safetensors", "needs the FLUX.1 VAE (ae.safetensors): put ae.safetensors in {models}/vae"),
])
def test_a_missing_part_is_named_in_one_line(comfy, tmp_path, part, line):
    transformer = _copy_install(comfy, tmp_path)
    models = transformer.parents[1]
    (models / part).unlink()
    info = inspect_model(transformer)
    assert info.family == "flux1" and not info.usable
    assert info.problem == "this FLUX.1 transformer " + line.format(models=models)
    with pytest.raises(ModelError) as caught:
        check_model(transformer)
    assert "\n" not in str(caught.value)


def test_an_sd_vae_is_not_taken_for_the_flux_vae(comfy, sd_file, tmp_path):
    from safetensors.torch import load_file, save_file

    transformer = _copy_install(comfy, tmp_path)
    models = transformer.parents[1]
    (models / "vae" / "ae.safetensors").unlink()
    sd_vae = {k.removeprefix("first_stage_model."): v for k, v in load_file(sd_file).items()
              if k.startswith("first_stage_model.")}
    save_file(sd_vae, str(models / "vae" / "sd-vae.safetensors"))
    assert "needs the FLUX.1 VAE" in inspect_model(transformer).problem


def test_no_t5_tokenizer_on_the_computer_says_which_files_to_add(comfy, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    transformer = _copy_install(comfy, tmp_path)
    shutil.rmtree(transformer.parents[2] / "comfy")
    problem = inspect_model(transformer).problem
    assert problem.startswith("the T5 tokenizer files are not on this computer: put tokenizer.json (or spiece.model) in")
    assert "t5xxl_tokenizer" in problem and "\n" not in problem


def test_a_flux_file_among_sd_checkpoints_is_flux_and_an_sd_file_among_flux_files_is_sd(comfy, sd_file, tmp_path):
    transformer = _copy_install(comfy, tmp_path)
    models = transformer.parents[1]
    (models / "checkpoints").mkdir()
    among_sd = models / "checkpoints" / "flux.safetensors"
    shutil.copy(transformer, among_sd)
    shutil.copy(sd_file, models / "checkpoints" / "sd15.safetensors")
    info = check_model(among_sd)  # Forge / A1111 users keep FLUX beside their SD checkpoints
    assert (info.family, info.variant) == ("flux1", "dev")
    sd_among_flux = models / "diffusion_models" / "sd15.safetensors"
    shutil.copy(sd_file, sd_among_flux)
    assert check_model(sd_among_flux).family == "sd1"
    assert check_model(models / "checkpoints" / "sd15.safetensors").family == "sd1"


def test_a_fill_transformer_is_told_by_its_input_channels(comfy, tmp_path):
    from safetensors.torch import load_file, save_file

    transformer = _copy_install(comfy, tmp_path)
    tensors = load_file(transformer)
    tensors["img_in.weight"] = tensors["img_in.weight"].repeat(1, 6)  # 384 input channels
    fill = transformer.with_name("flux1-fill-tiny.safetensors")
    save_file(tensors, str(fill))
    assert check_model(fill).variant == "fill"


# --------------------------------------------------------------------------------------------
# GGUF transformers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flux-gguf") / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "flux1-dev", "--layout", "gguf"]) == 0
    return root / "models" / "diffusion_models" / "flux1-dev-tiny-Q8_0.gguf"


def test_a_gguf_transformer_is_recognised_by_its_bytes_and_generates_quantized(gguf_model, tmp_path):
    from engine.engine import Engine

    info = check_model(gguf_model)
    assert (info.family, info.format, info.variant) == ("flux1", "gguf", "dev")
    engine = Engine(device="cpu")
    request = GenerationRequest(prompt="a red fox", model=str(gguf_model), steps=3, width=64, height=64,
                                guidance_scale=3.5, seed=3)
    quantized = engine.generate(request)
    linear = engine.runner.base.transformer.transformer_blocks[0].attn.to_q
    assert type(linear).__name__ == "GGUFLinear" and linear.weight.quant_type.name == "Q8_0"  # kept quantized

    # The same weights unquantized (the safetensors split layout): nearly the same picture.
    plain_root = tmp_path / "ComfyUI"
    assert main(["make-test-model", str(plain_root), "--family", "flux1-dev", "--layout", "comfyui"]) == 0
    shutil.rmtree(plain_root / "comfy")
    shutil.copytree(gguf_model.parents[2] / "comfy", plain_root / "comfy")  # the same tiny tokenizer
    plain = engine.generate(request.replace(model=str(plain_root / "models/diffusion_models/flux1-dev-tiny.safetensors")))
    a, b = (np.asarray(r.images[0]).astype(int) for r in (quantized, plain))
    assert np.abs(a - b).mean() < 2.0 and a.std() > 5  # Q8_0 rounding, not another model


def test_a_gguf_that_is_not_a_flux_transformer_or_is_truncated_says_so(gguf_model, tmp_path):
    import gguf
    import numpy as np

    other = tmp_path / "llama.gguf"
    writer = gguf.GGUFWriter(str(other), arch="llama")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert inspect_model(other).problem.startswith("Easel reads GGUF files only as FLUX.1, FLUX.2 [klein], Z-Image, Qwen-Image and SD 3.5 transformers")
    cut = gguf_model.with_name("cut.gguf")
    cut.write_bytes(gguf_model.read_bytes()[: gguf_model.stat().st_size // 2])
    problem = inspect_model(cut).problem
    assert problem.startswith("truncated") and "\n" not in problem


def test_a_kontext_transformer_is_told_by_its_name(comfy, tmp_path):
    transformer = _copy_install(comfy, tmp_path)
    kontext = transformer.with_name("flux1-kontext-dev.safetensors")
    shutil.copy(transformer, kontext)
    assert check_model(kontext).variant == "kontext"
    assert check_model(transformer).variant == "dev"  # the same tensors under another name: FLUX.1 [dev]


def test_fp8_transformer_and_t5_files_load_and_generate(comfy, tmp_path):
    """ComfyUI's fp8 downloads (flux1-dev-fp8, t5xxl_fp8_e4m3fn) load and generate (kept in fp8 storage, computed in the run's
    dtype: tests/engine/test_fp8_storage.py)."""
    import torch
    from safetensors.torch import load_file, save_file

    from engine.engine import Engine

    transformer = _copy_install(comfy, tmp_path)
    text_encoders = transformer.parents[1] / "text_encoders"

    def fp8(path: Path, target: Path) -> None:
        tensors = load_file(path)
        path.unlink()
        save_file({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in tensors.items()}, str(target))

    fp8(transformer, transformer)
    fp8(text_encoders / "t5xxl_fp16.safetensors", text_encoders / "t5xxl_fp8_e4m3fn.safetensors")
    assert read_header(transformer).tensors["img_in.weight"].dtype == "F8_E4M3"
    request = GenerationRequest(prompt="a red fox", steps=3, width=64, height=64, guidance_scale=3.5, seed=3)
    engine = Engine(device="cpu")
    low = np.asarray(engine.generate(request.replace(model=str(transformer))).images[0]).astype(int)
    full = np.asarray(engine.generate(request.replace(model=str(comfy))).images[0]).astype(int)
    assert np.abs(low - full).mean() < 4.0 and low.std() > 5  # fp8 rounding of the same model


def _scaled_fp8(path: Path, target: Path, kitchen: bool = False) -> None:
    """``path`` rewritten as ComfyUI's scaled fp8 files are: each weight matrix as fp8 values of
    weight / scale with its scale beside it (``kitchen``: comfy-kitchen's names and markers)."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    tensors, out = load_file(path), {}
    for key, value in tensors.items():
        if value.ndim != 2 or not key.endswith(".weight"):
            out[key] = value
            continue
        scale = value.float().abs().max() / 448
        out[key] = (value.float() / scale).to(torch.float8_e4m3fn)
        base = key.removesuffix(".weight")
        if kitchen:
            out[base + ".weight_scale"] = scale.reshape(())
            out[base + ".comfy_quant"] = torch.tensor(list(json.dumps({"format": "float8_e4m3fn"}).encode()),
                                                      dtype=torch.uint8)
        else:
            out[base + ".scale_weight"] = scale.reshape(1)
    if not kitchen:
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    path.unlink()
    save_file(out, str(target))


def test_comfyuis_scaled_fp8_files_load_with_their_scales(comfy, tmp_path):
    """ComfyUI's "fp8_scaled" downloads (t5xxl_fp8_e4m3fn_scaled, *_fp8_scaled transformers, both layouts
    of the scale) make the model's image: without the scales the weights are hundreds of times too large."""
    from engine.engine import Engine

    transformer = _copy_install(comfy, tmp_path)
    text_encoders = transformer.parents[1] / "text_encoders"
    _scaled_fp8(transformer, transformer, kitchen=True)
    _scaled_fp8(text_encoders / "t5xxl_fp16.safetensors", text_encoders / "t5xxl_fp8_e4m3fn_scaled.safetensors")
    assert inspect_model(transformer).usable
    request = GenerationRequest(prompt="a red fox", steps=3, width=64, height=64, guidance_scale=3.5, seed=3)
    engine = Engine(device="cpu")
    scaled = np.asarray(engine.generate(request.replace(model=str(transformer))).images[0]).astype(int)
    full = np.asarray(engine.generate(request.replace(model=str(comfy))).images[0]).astype(int)
    assert np.abs(scaled - full).mean() < 4.0 and scaled.std() > 5  # fp8 rounding of the same model


def test_a_quantized_layout_easel_cannot_read_is_one_line(comfy, tmp_path):
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from engine.engine import Engine

    transformer = _copy_install(comfy, tmp_path)
    tensors = load_file(transformer)
    tensors["img_in.comfy_quant"] = torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()), dtype=torch.uint8)
    tensors["img_in.weight_scale"] = torch.ones(4, 1)
    save_file(tensors, str(transformer))
    request = GenerationRequest(prompt="a red fox", steps=1, width=64, height=64, seed=3, model=str(transformer))
    with pytest.raises(ModelError) as caught:
        Engine(device="cpu").generate(request)
    assert "\n" not in str(caught.value) and "quantized as nvfp4" in str(caught.value)


def test_an_all_in_one_checkpoint_generates_the_same_pixels_as_the_split_layout(comfy, tmp_path):
    from engine.engine import Engine

    aio = tmp_path / "checkpoints" / "flux1-dev-aio.safetensors"  # beside SD checkpoints, as Forge keeps them
    assert main(["make-test-model", str(aio), "--family", "flux1-dev", "--layout", "single-file"]) == 0
    found = split.find_parts(split.identify(read_header(aio)))
    assert {arch: (p.path, p.prefix) for arch, p in found.items()} == {
        "clip_l": (str(aio), "text_encoders.clip_l.transformer."), "t5xxl": (str(aio), "text_encoders.t5xxl.transformer."),
        "ae16": (str(aio), "vae.")}
    shutil.rmtree(aio.parent / "t5xxl_tokenizer")
    shutil.copytree(comfy.parents[2] / "comfy" / "text_encoders" / "t5_tokenizer", aio.parent / "t5xxl_tokenizer")
    info = check_model(aio)
    assert (info.family, info.variant) == ("flux1", "dev")
    engine = Engine(device="cpu")
    request = GenerationRequest(prompt="a red fox", steps=3, width=64, height=64, guidance_scale=3.5, seed=3)
    a = engine.generate(request.replace(model=str(aio)))
    b = engine.generate(request.replace(model=str(comfy)))
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))

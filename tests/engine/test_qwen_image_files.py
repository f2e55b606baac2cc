"""Qwen-Image (and Qwen-Image-Edit) from ComfyUI's split layout: the transformer (diffusers' names under
ComfyUI's prefix, or a GGUF) with qwen_2.5_vl_7b and qwen_image_vae found from their headers, the Edit
models told by ComfyUI's file names, each missing part named in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import GenerationRequest, Mode, ModelError
from engine.cli import main
from engine.files import split
from engine.files.headers import read_header
from engine.files.probe import check_model, inspect_model


@pytest.fixture(scope="module")
def comfy(tmp_path_factory) -> Path:
    """A ComfyUI install holding the tiny Qwen-Image in its split layout; returns the transformer file."""
    root = tmp_path_factory.mktemp("qwen-comfy") / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "qwen-image", "--layout", "comfyui"]) == 0
    return root / "models" / "diffusion_models" / "qwen_image-tiny.safetensors"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from engine.engine import Engine

    return Engine(device="cpu", state_dir=tmp_path_factory.mktemp("state"))


def _copy_install(comfy: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    shutil.copytree(comfy.parents[2], root)
    return root / "models" / "diffusion_models" / comfy.name


def _request(path, **changes) -> GenerationRequest:
    fields = dict(prompt="a sign that says OPEN", model=str(path), seed=5, steps=2, width=64, height=64,
                  guidance_scale=4.0)
    fields.update(changes)
    return GenerationRequest(**fields)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB")).astype(int)


def test_each_part_is_named_from_its_header_alone(comfy):
    found = {p.name: split.identify(read_header(p)) for p in comfy.parents[1].rglob("*.safetensors")}
    assert {name: (part.role, part.arch) for name, part in found.items()} == {
        "qwen_image-tiny.safetensors": ("transformer", "qwen_image"),
        "qwen_2.5_vl_7b.safetensors": ("text_encoder", "qwen25vl"), "qwen_image_vae.safetensors": ("vae", "qwen-vae")}
    assert found["qwen_image-tiny.safetensors"].variant == ""


def test_the_split_layout_generates_the_folders_image_and_regenerates_it(comfy, engine, tmp_path):
    """The same weights as a diffusers folder and as ComfyUI's files give the same picture."""
    from engine.families.qwen_image.testmodel import make_qwen_image_test_model

    info = check_model(comfy)
    assert (info.family, info.kind, info.format) == ("qwen_image", "checkpoint", "safetensors")
    assert families.capabilities(info).label == "Qwen-Image" and info.problem is None
    result = engine.generate(_request(comfy))
    pixels = _pixels(result)
    assert result.images[0].size == (64, 64) and pixels.std() > 1
    again = engine.generate(_request(comfy))
    assert np.array_equal(pixels, _pixels(again))  # the same seed, the same pixels
    folder = make_qwen_image_test_model(tmp_path / "Qwen-Image-tiny", 0, "qwen-image", released_rules=True)
    assert np.abs(_pixels(engine.generate(_request(folder))) - pixels).max() <= 2


@pytest.mark.parametrize("missing, says", [("text_encoders/qwen_2.5_vl_7b.safetensors", "qwen_2.5_vl_7b.safetensors"),
                                           ("vae/qwen_image_vae.safetensors", "qwen_image_vae.safetensors")])
def test_a_missing_part_is_named_with_where_it_goes(comfy, tmp_path, missing, says):
    transformer = _copy_install(comfy, tmp_path)
    (transformer.parents[1] / missing).unlink()
    with pytest.raises(ModelError) as caught:
        check_model(transformer)
    line = str(caught.value)
    assert "Qwen-Image transformer needs" in line and says in line and "\n" not in line
    assert str(transformer.parents[1] / missing.split("/")[0]) in line


def test_a_missing_tokenizer_says_which_files_to_add(comfy, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    transformer = _copy_install(comfy, tmp_path)
    shutil.rmtree(transformer.parents[2] / "comfy")
    info = inspect_model(transformer)
    assert "Qwen2.5-VL tokenizer" in info.problem and "vocab.json + merges.txt" in info.problem
    assert "\n" not in info.problem


def test_a_gguf_transformer_generates_kept_quantized(tmp_path, engine):
    root = tmp_path / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "qwen-image", "--layout", "gguf"]) == 0
    gguf_file = root / "models" / "diffusion_models" / "qwen_image-tiny-Q8_0.gguf"
    info = check_model(gguf_file)
    assert (info.family, info.format, info.problem) == ("qwen_image", "gguf", None)
    result = engine.generate(_request(gguf_file))
    quantized = [p for p in engine.runner.base.transformer.parameters() if type(p).__name__ == "GGUFParameter"]
    assert quantized, "the GGUF transformer was dequantized on load"
    pixels = _pixels(result)
    assert pixels.std() > 1 and np.array_equal(pixels, _pixels(engine.generate(_request(gguf_file))))


def test_edit_transformers_are_told_by_comfyuis_names(comfy, tmp_path):
    """Qwen-Image-Edit and Edit 2509 hold the generator's tensors: the file's name says which it is."""
    transformer = _copy_install(comfy, tmp_path)
    for name, label in (("qwen_image_edit_fp8_e4m3fn.safetensors", "Qwen-Image-Edit"),
                        ("qwen_image_edit_2509_bf16.safetensors", "Qwen-Image-Edit Plus")):
        renamed = transformer.with_name(name)
        transformer.rename(renamed)
        caps = families.capabilities(check_model(renamed))
        assert caps.label == label and caps.instruction_edit and Mode.TXT2IMG not in caps.modes
        transformer = renamed


def test_edit_2511s_marker_makes_it_edit_plus_and_layered_is_refused(comfy, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    transformer = _copy_install(comfy, tmp_path)
    tensors = load_file(str(transformer))
    marked = transformer.with_name("qwen_image_2511-tiny.safetensors")
    save_file({**tensors, "model.diffusion_model.__index_timestep_zero__": torch.zeros(1)}, str(marked))
    assert check_model(marked).variant == "edit-plus"
    layered = transformer.with_name("qwen_image_layered-tiny.safetensors")
    save_file({**tensors, "model.diffusion_model.time_text_embed.addition_t_embedding.weight": torch.zeros(2, 64)},
              str(layered))
    assert "Qwen-Image-Layered" in inspect_model(layered).problem


@pytest.mark.slow  # an Edit model reads its input at about one megapixel: a minute here
def test_an_edit_split_layout_edits_an_image_by_instruction(tmp_path, engine):
    root = tmp_path / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "qwen-image-edit-plus", "--layout", "comfyui"]) == 0
    transformer = root / "models" / "diffusion_models" / "qwen_image_edit_2509-tiny.safetensors"
    source = Image.fromarray(np.random.default_rng(9).integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")
    result = engine.generate(_request(transformer, mode=Mode.IMG2IMG, init_image=source, prompt="make it red"))
    assert result.images[0].size == (64, 64) and _pixels(result).std() > 1


def test_the_cli_generates_from_the_comfyui_transformer_and_regenerates_it(comfy, tmp_path, capsys, no_network):
    out = tmp_path / "out.png"
    code = main(["generate", "--model", str(comfy), "--prompt", "a sign that says OPEN", "--steps", "2",
                 "--seed", "4", "--width", "64", "--height", "64", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    parameters = Image.open(out).text["parameters"]
    assert "Steps: 2" in parameters and "Sampler:" not in parameters
    again = tmp_path / "again.png"
    assert main(["regenerate", str(out), "--model", str(comfy), "--out", str(again)]) == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))  # from the metadata alone
    assert no_network == []


def test_make_test_model_lists_the_split_and_gguf_layouts(capsys):
    assert main(["make-test-model", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("qwen-image", "qwen-image-edit", "qwen-image-edit-plus"):
        line = next(line for line in listed.splitlines() if line.split() and line.split()[0] == name)
        assert "comfyui" in line and "gguf" in line


def test_comfyuis_model_folder_stands_for_its_one_transformer(comfy, tmp_path, capsys):
    """``--model ComfyUI/models`` (or the install) runs the transformer in it; with several, one line names them."""
    for folder in (comfy.parents[2], comfy.parents[1], comfy.parent):
        assert check_model(folder).path == str(comfy)
    out = tmp_path / "out.png"
    assert main(["generate", "--model", str(comfy.parents[1]), "--prompt", "a sign", "--steps", "2", "--width", "64",
                 "--height", "64", "--out", str(out)]) == 0, capsys.readouterr().err
    transformer = _copy_install(comfy, tmp_path)
    shutil.copyfile(transformer, transformer.with_name("qwen_image_edit-tiny.safetensors"))
    with pytest.raises(ModelError) as caught:
        check_model(transformer.parents[1])
    line = str(caught.value)
    assert "2 transformers" in line and "qwen_image_edit-tiny.safetensors" in line and "\n" not in line

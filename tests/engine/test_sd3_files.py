"""SD 3.5 from ComfyUI's split layout: the MMDiT transformer alone (original names under ComfyUI's prefix,
a GGUF, or Stability's checkpoint that carries the VAE) with clip_l, clip_g, the optional t5xxl and the
VAE found from their headers (CLIP-G / the SD 3.5 VAE by their ComfyUI names where shapes cannot tell),
each missing part named in one line, and a missing T5 leaving the model on its CLIP encoders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import GenerationRequest, ModelError
from engine.cli import main
from engine.files import split
from engine.files.headers import read_header
from engine.files.probe import check_model


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The tiny SD 3.5 Medium as a diffusers folder and as a ComfyUI install (the folder's T5 tokenizer put
    where ComfyUI keeps its own: the tiny tokenizers are trained per build, not bit-stable)."""
    from engine.families.sd3.testmodel import make_sd3_test_model

    root = tmp_path_factory.mktemp("sd3-comfy")
    folder = make_sd3_test_model(root / "sd35-medium", "sd35-medium", "diffusers")
    transformer = make_sd3_test_model(root / "ComfyUI", "sd35-medium", "comfyui")
    tokenizer = root / "ComfyUI" / "comfy" / "text_encoders" / "t5_tokenizer"
    shutil.rmtree(tokenizer)
    shutil.copytree(folder / "tokenizer_3", tokenizer)
    return {"folder": folder, "transformer": transformer}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from engine.engine import Engine

    return Engine(device="cpu", state_dir=tmp_path_factory.mktemp("state"))


def _copy_install(transformer: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    shutil.copytree(transformer.parents[2], root)
    return root / "models" / "diffusion_models" / transformer.name


def _request(path, **changes) -> GenerationRequest:
    fields = dict(prompt="a red fox in the snow", model=str(path), seed=5, steps=2, width=64, height=64,
                  guidance_scale=3.0)
    fields.update(changes)
    return GenerationRequest(**fields)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB")).astype(int)


def test_each_part_is_named_from_its_header_and_comfyuis_names(built):
    found = {p.name: split.identify(read_header(p)) for p in built["transformer"].parents[1].rglob("*.safetensors")}
    assert {name: (part.role, part.arch) for name, part in found.items()} == {
        "sd3.5_medium-tiny.safetensors": ("transformer", "sd3"), "clip_l.safetensors": ("text_encoder", "clip_l"),
        "clip_g.safetensors": ("text_encoder", "clip_g"), "t5xxl_fp16.safetensors": ("text_encoder", "t5xxl"),
        "sd3.5_vae.safetensors": ("vae", "sd3-vae")}


def test_the_split_layout_gives_the_folders_pixels_and_regenerates_them(built, engine):
    info = check_model(built["transformer"])
    assert (info.family, info.kind, info.problem) == ("sd3", "checkpoint", None)
    assert families.capabilities(info).label == "SD 3.5 Medium"  # told from the tensors (dual attention)
    result = engine.generate(_request(built["transformer"]))
    pixels = _pixels(result)
    assert pixels.std() > 1 and not result.notices
    assert np.array_equal(pixels, _pixels(engine.generate(_request(built["transformer"]))))
    assert np.array_equal(pixels, _pixels(engine.generate(_request(built["folder"]))))


def test_without_t5_it_runs_on_clip_and_says_where_t5_goes(built, engine, tmp_path):
    transformer = _copy_install(built["transformer"], tmp_path)
    (transformer.parents[1] / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    info = check_model(transformer)
    assert info.problem is None
    from engine.families.sd3 import THRESHOLDS

    assert families.capabilities(info).memory_thresholds == THRESHOLDS["medium-no-t5"]  # "auto" plans without T5
    assert families.capabilities(check_model(built["transformer"])).memory_thresholds == THRESHOLDS["medium"]
    result = engine.generate(_request(transformer))
    text = " ".join(result.notices)
    assert "T5-XXL text encoder is not there" in text and "t5xxl_fp16.safetensors" in text
    assert str(transformer.parents[1] / "text_encoders") in text and "CLIP encoders only" in text
    assert _pixels(result).std() > 1


@pytest.mark.parametrize("missing, says", [("text_encoders/clip_l.safetensors", "clip_l.safetensors"),
                                           ("text_encoders/clip_g.safetensors", "clip_g.safetensors"),
                                           ("vae/sd3.5_vae.safetensors", "sd3.5_vae.safetensors")])
def test_a_missing_part_is_named_with_where_it_goes(built, tmp_path, missing, says):
    transformer = _copy_install(built["transformer"], tmp_path)
    (transformer.parents[1] / missing).unlink()
    with pytest.raises(ModelError) as caught:
        check_model(transformer)
    line = str(caught.value)
    assert "SD 3.5 transformer needs" in line and says in line and "\n" not in line
    assert str(transformer.parents[1] / missing.split("/")[0]) in line


def test_the_flux_vae_is_never_taken_for_sd3s(built, tmp_path):
    """The FLUX.1 ae.safetensors has the SD 3.5 VAE's shapes: without an SD 3.5 name it is FLUX's."""
    transformer = _copy_install(built["transformer"], tmp_path)
    vae = transformer.parents[1] / "vae"
    (vae / "sd3.5_vae.safetensors").rename(vae / "ae.safetensors")
    assert split.identify(read_header(vae / "ae.safetensors")).arch == "ae16"
    with pytest.raises(ModelError, match="SD 3.5 VAE"):
        check_model(transformer)


def test_a_checkpoint_with_its_vae_takes_the_encoders_from_text_encoders(built, engine, tmp_path):
    """Stability's sd3.5_medium.safetensors: the MMDiT and the VAE (``first_stage_model.``), no encoders."""
    from safetensors.torch import load_file, save_file

    transformer = _copy_install(built["transformer"], tmp_path)
    models = transformer.parents[1]
    checkpoint = models / "checkpoints" / "sd3.5_medium.safetensors"
    checkpoint.parent.mkdir()
    save_file({**load_file(str(transformer)), **{"first_stage_model." + k: v for k, v in
                                                load_file(str(models / "vae" / "sd3.5_vae.safetensors")).items()}},
              str(checkpoint))
    transformer.unlink()
    (models / "vae" / "sd3.5_vae.safetensors").unlink()
    assert check_model(checkpoint).problem is None
    assert np.array_equal(_pixels(engine.generate(_request(checkpoint))),
                          _pixels(engine.generate(_request(built["folder"]))))


def test_a_diffusers_named_vae_file_works_too(built, engine, tmp_path):
    """Stability's vae/diffusion_pytorch_model.safetensors, renamed sd3.5_vae.safetensors as users do."""
    transformer = _copy_install(built["transformer"], tmp_path)
    shutil.copyfile(built["folder"] / "vae" / "diffusion_pytorch_model.safetensors",
                    transformer.parents[1] / "vae" / "sd3.5_vae.safetensors")
    assert np.array_equal(_pixels(engine.generate(_request(transformer))),
                          _pixels(engine.generate(_request(built["folder"]))))


def test_a_gguf_transformer_generates_kept_quantized(tmp_path, engine):
    root = tmp_path / "ComfyUI"
    assert main(["make-test-model", str(root), "--family", "sd35-large-turbo", "--layout", "gguf"]) == 0
    gguf_file = root / "models" / "diffusion_models" / "sd3.5_large_turbo-tiny-Q8_0.gguf"
    info = check_model(gguf_file)
    assert (info.family, info.format, info.problem) == ("sd3", "gguf", None)
    assert families.capabilities(info).label.startswith("SD 3.5 Large Turbo")
    result = engine.generate(_request(gguf_file, guidance_scale=0.0))
    quantized = [p for p in engine.runner.base.transformer.parameters() if type(p).__name__ == "GGUFParameter"]
    assert quantized, "the GGUF transformer was dequantized on load"
    pixels = _pixels(result)
    assert pixels.std() > 1
    assert np.array_equal(pixels, _pixels(engine.generate(_request(gguf_file, guidance_scale=0.0))))


def test_the_cli_generates_from_the_comfyui_transformer_and_regenerates_it(built, tmp_path, capsys, no_network):
    out = tmp_path / "out.png"
    code = main(["generate", "--model", str(built["transformer"]), "--prompt", "a red fox", "--steps", "2",
                 "--seed", "4", "--width", "64", "--height", "64", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    parameters = Image.open(out).text["parameters"]
    assert "Steps: 2" in parameters and "Sampler:" not in parameters
    again = tmp_path / "again.png"
    code = main(["regenerate", str(out), "--model", str(built["transformer"]), "--out", str(again)])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))  # from the metadata alone
    assert no_network == []

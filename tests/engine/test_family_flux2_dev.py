"""FLUX.2 [dev] through the real loaders, the Engine and the `easel` CLI, with a tiny random-weight
model built from the bundled real configs (a Flux2Transformer2DModel with the guidance embedder, a
30-layer Mistral3ForConditionalGeneration and a locally trained Mistral tokenizer): a diffusers folder
(its tokenizer named PixtralProcessor as released), a Hugging Face cache snapshot, ComfyUI's split
layout and a GGUF transformer; never taken for FLUX.2 [klein], FLUX.1 or SD (nor they for it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import MAX_REFERENCES, GenerationRequest, InvalidRequest, Mode, ReferenceInput
from engine.cli import main
from engine.files.probe import check_model, inspect_model
from engine.metadata import read_metadata

TRANSFORMER = Path("models") / "diffusion_models" / "flux2_dev_tiny.safetensors"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flux2-dev")
    for layout in ("diffusers", "comfyui", "gguf"):  # as users run it
        assert main(["make-test-model", str(root / layout), "--family", "flux2-dev", "--layout", layout]) == 0
    return {"folder": root / "diffusers", "comfy": root / "comfyui" / TRANSFORMER,
            "gguf": root / "gguf" / TRANSFORMER.with_name("flux2_dev_tiny-Q8_0.gguf")}


@pytest.fixture(scope="module")
def engine():
    from engine.engine import Engine

    return Engine(device="cpu")


def _pixels(image) -> np.ndarray:
    image = Image.open(image) if isinstance(image, (str, Path)) else image
    return np.asarray(image.convert("RGB")).astype(int)


def _request(model, **changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="a red fox", model=str(model), steps=3, width=64, height=64, seed=5,
                                       guidance_scale=4.0), **changes})


def _install_copy(transformer: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    shutil.copytree(transformer.parents[2], root)
    return root / "models" / "diffusion_models" / transformer.name


def _picture(color, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(sum(color))
    noise = rng.integers(-30, 30, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.array(color) + noise, 0, 255).astype(np.uint8))


def test_make_test_model_lists_dev_in_every_layout(capsys):
    assert main(["make-test-model", "--list"]) == 0
    assert "flux2-dev diffusers,comfyui,gguf" in capsys.readouterr().out.splitlines()


def test_dev_is_recognised_with_its_own_defaults_and_refusals(models):
    info = check_model(models["folder"])
    assert (info.family, info.variant, info.kind) == ("flux2", "dev", "checkpoint")
    caps = families.capabilities(info)
    assert caps.label == "FLUX.2 [dev]" and caps.short == "FLUX.2"
    assert caps.defaults == {"width": 1024, "height": 1024, "steps": 28, "guidance_scale": 4.0}
    assert caps.modes == (Mode.TXT2IMG, Mode.IMG2IMG) and caps.instruction_edit
    assert caps.references == MAX_REFERENCES
    # Guidance-distilled: a guidance scale, but no negative prompt and no strength, each with its reason.
    assert "guidance_scale" in caps.parameters
    assert "negative_prompt" not in caps.parameters and "guidance-distilled" in caps.reasons["negative_prompt"]
    assert "strength" not in caps.parameters and "takes no strength" in caps.reasons["strength"]
    assert "no inpainting pipeline" in caps.refusal(Mode.INPAINT) and "\n" not in caps.refusal(Mode.INPAINT)
    assert caps.samplers == () and caps.size_step == 16 and caps.latent_space == "flux2"
    assert dict(caps.memory_thresholds) == {"fast": 116.0, "balanced": 115.0, "low": 36.0}


def test_a_hugging_face_snapshot_is_named_by_its_repo_and_its_tokenizer_found_in_the_cache(models, tmp_path,
                                                                                          monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snapshot = cache / "models--black-forest-labs--FLUX.2-dev" / "snapshots" / "0123abc"
    shutil.copytree(models["folder"], snapshot)
    info = inspect_model(snapshot)
    assert (info.name, info.family, info.variant, info.problem) == ("black-forest-labs/FLUX.2-dev", "flux2", "dev",
                                                                    None)
    # A copy of the folder without its tokenizer files takes those of the FLUX.2 [dev] snapshot in the cache.
    bare = tmp_path / "bare"
    shutil.copytree(models["folder"], bare)
    shutil.rmtree(bare / "tokenizer")
    assert inspect_model(bare).problem is None
    shutil.rmtree(snapshot / "tokenizer")
    problem = inspect_model(bare).problem
    assert problem == ("the Mistral 3 tokenizer files of FLUX.2 [dev] are not on this computer: put tokenizer.json "
                       f"and tokenizer_config.json (with chat_template.jinja) in {bare / 'tokenizer'}, from "
                       "black-forest-labs/FLUX.2-dev's tokenizer folder")


def test_cli_generate_and_regenerate_bit_identical(models, tmp_path, capsys):
    model = str(models["folder"])
    out = tmp_path / "out"
    assert main(["generate", "--model", model, "--prompt", "a (red:1.3) fox", "--negative", "blurry", "--width", "72",
                 "--height", "64", "--steps", "3", "--cfg", "3.5", "--seed", "11", "--out", str(out / "t.png")]) == 0
    err = capsys.readouterr().err
    assert "16 px grid" in err and "Prompt weights" in err and "takes no negative prompt" in err
    source = out / "t.png"
    assert Image.open(source).size == (72, 64)
    text = read_metadata(source).raw["parameters"]
    assert "Steps: 3" in text and "CFG scale: 3.5" in text and "Sampler:" not in text and "Negative prompt" not in text
    assert main(["regenerate", str(source), "--model", model, "--out", str(out / "again.png")]) == 0
    assert np.array_equal(_pixels(source), _pixels(out / "again.png"))


def test_the_guidance_acts_and_a_negative_prompt_changes_nothing(models, engine):
    first = engine.generate(_request(models["folder"], negative_prompt="blurry, dark"))
    assert first.request.negative_prompt == "" and any("takes no negative prompt" in n for n in first.notices)
    # The guidance is an input of the transformer (guidance-distilled): another value, another image.
    other = engine.generate(_request(models["folder"], guidance_scale=1.5))
    assert not np.array_equal(_pixels(first.images[0]), _pixels(other.images[0]))


def test_the_edit_reads_the_input_image_and_the_reference_images(models, engine):
    red, blue, green = _picture((220, 30, 30)), _picture((30, 30, 220)), _picture((30, 200, 40), (64, 96))
    edit = _request(models["folder"], mode=Mode.IMG2IMG, init_image=red, prompt="make it a winter scene")
    first = engine.generate(edit)
    assert first.images[0].size == (64, 64)
    other = engine.generate(edit.replace(init_image=blue))
    assert not np.array_equal(_pixels(first.images[0]), _pixels(other.images[0]))
    with_ref = engine.generate(edit.replace(references=(ReferenceInput(image=green),)))
    assert not np.array_equal(_pixels(first.images[0]), _pixels(with_ref.images[0]))
    assert dict(with_ref.params)["Reference images"] == "1"
    # A picture its image processor cannot read (over 8:1) is refused in one line, before anything runs.
    with pytest.raises(InvalidRequest) as refused:
        engine.generate(edit.replace(references=(ReferenceInput(image=_picture((9, 9, 9), (64, 600))),)))
    assert str(refused.value).endswith("reference image 1 is 64×600 px: FLUX.2 [dev] takes pictures at most 8 "
                                       "times as long one way as the other")


@pytest.mark.slow
def test_the_edit_takes_no_strength_and_references_steer_text_to_image(models, engine):
    edit = _request(models["folder"], mode=Mode.IMG2IMG, init_image=_picture((220, 30, 30)), prompt="make it blue")
    first = engine.generate(edit)
    assert np.array_equal(_pixels(first.images[0]), _pixels(engine.generate(edit.replace(strength=0.3)).images[0]))
    # Reference images steer a text-to-image job too (FLUX.2 [dev]'s multi-reference generation).
    plain = engine.generate(_request(models["folder"]))
    referenced = engine.generate(_request(models["folder"], references=(ReferenceInput(image=_picture((30, 200, 40))),)))
    assert not np.array_equal(_pixels(plain.images[0]), _pixels(referenced.images[0]))


def test_inpainting_is_refused_in_one_line(models, engine):
    mask = Image.new("L", (64, 64), 0)
    with pytest.raises(InvalidRequest) as refused:
        mask.paste(255, (16, 16, 48, 48))
        engine.generate(_request(models["folder"], mode=Mode.INPAINT, init_image=_picture((1, 2, 3)), mask=mask))
    assert "FLUX.2 [dev] has no inpainting pipeline" in str(refused.value) and "\n" not in str(refused.value)


@pytest.fixture(scope="module")
def folder_image(models, engine) -> np.ndarray:
    return _pixels(engine.generate(_request(models["folder"])).images[0])


@pytest.mark.parametrize("layout,fmt", [("comfy", "safetensors"), ("gguf", "gguf")])
def test_split_layout_and_gguf_generate_the_pixels_of_the_folder(models, engine, folder_image, layout, fmt):
    info = check_model(models[layout])
    assert (info.family, info.format, info.variant, info.problem) == ("flux2", fmt, "dev", None)
    result = engine.generate(_request(models[layout]))
    assert type(engine.runner.base).__name__ == "Flux2Pipeline" and engine.runner.info.format == fmt
    diff = np.abs(_pixels(result.images[0]) - folder_image)
    if fmt == "safetensors":
        assert diff.max() == 0  # the same weights, assembled from ComfyUI's parts
    else:
        assert 0 < diff.max() <= 16  # Q8_0: quantized, still the same image


@pytest.mark.parametrize("part,line", [
    ("text_encoders/mistral_3_small_flux2_tiny.safetensors",
     "this FLUX.2 [dev] transformer needs the Mistral 3 Small text encoder: put "
     "mistral_3_small_flux2_bf16.safetensors in {models}/text_encoders"),
    ("vae/flux2-vae.safetensors",
     "this FLUX.2 [dev] transformer needs the FLUX.2 VAE: put flux2-vae.safetensors in {models}/vae"),
])
def test_a_missing_part_is_named_in_one_line(models, tmp_path, part, line):
    transformer = _install_copy(models["comfy"], tmp_path)
    root = transformer.parents[1]
    (root / part).unlink()
    info = inspect_model(transformer)
    assert (info.family, info.variant) == ("flux2", "dev")
    assert info.problem == line.format(models=root)


def test_no_mistral_tokenizer_on_the_computer_says_which_files_to_add(models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    transformer = _install_copy(models["comfy"], tmp_path)
    root = transformer.parents[1]
    shutil.rmtree(root / "text_encoders" / "mistral3_tokenizer")
    problem = inspect_model(transformer).problem
    assert problem == ("the Mistral 3 tokenizer files are not on this computer: put tokenizer.json and "
                       f"tokenizer_config.json (with chat_template.jinja) in {root / 'text_encoders' / 'mistral3_tokenizer'}"
                       ", or download black-forest-labs/FLUX.2-dev's tokenizer folder")


def test_a_dev_file_is_never_klein_flux1_or_sd_and_their_encoders_are_not_swapped(models, tmp_path):
    transformer = _install_copy(models["comfy"], tmp_path)
    root = transformer.parents[1]
    assert main(["make-test-model", str(tmp_path / "klein"), "--family", "flux2-klein", "--layout", "comfyui"]) == 0
    assert main(["make-test-model", str(tmp_path / "sd15.safetensors"), "--family", "sd15", "--layout",
                 "single-file"]) == 0
    klein = tmp_path / "klein" / "models" / "diffusion_models" / "flux-2-klein-tiny.safetensors"
    # Forge users keep everything among checkpoints: still [dev], and SD beside it still SD.
    (root / "checkpoints").mkdir()
    shutil.copy(transformer, root / "checkpoints" / "flux-2-klein-but-dev.safetensors")  # a misleading name
    info = check_model(root / "checkpoints" / "flux-2-klein-but-dev.safetensors")
    assert (info.family, info.variant) == ("flux2", "dev")
    shutil.copy(tmp_path / "sd15.safetensors", root / "checkpoints" / "sd15.safetensors")
    assert check_model(root / "checkpoints" / "sd15.safetensors").family == "sd1"
    # Klein beside [dev]: each is what it is, and neither takes the other's text encoder.
    shutil.copy(klein, root / "diffusion_models" / klein.name)
    assert inspect_model(root / "diffusion_models" / klein.name).problem.startswith(
        "this FLUX.2 transformer needs a Qwen3 text encoder")  # the Mistral encoder there is not Qwen3
    assert check_model(transformer).variant == "dev"
    shutil.copy(tmp_path / "klein" / "models" / "text_encoders" / "qwen_3_4b.safetensors", root / "text_encoders")
    (root / "text_encoders" / "mistral_3_small_flux2_tiny.safetensors").unlink()
    assert "needs the Mistral 3 Small text encoder" in inspect_model(transformer).problem  # Qwen3 is not taken
    assert check_model(klein).variant == "distilled"


def test_an_fp8_mistral_encoder_stays_in_fp8_and_makes_nearly_the_same_image(models, engine, folder_image, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    transformer = _install_copy(models["comfy"], tmp_path)
    encoder = transformer.parents[1] / "text_encoders" / "mistral_3_small_flux2_tiny.safetensors"
    tensors = load_file(encoder)
    encoder.unlink()
    save_file({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in tensors.items()},
              str(encoder.with_name("mistral_3_small_flux2_fp8.safetensors")))
    result = engine.generate(_request(transformer))
    assert result.settings.fp8_storage == ("text_encoder",)
    text_encoder = engine.runner.base.text_encoder
    assert text_encoder.layers[0].self_attn.q_proj.weight.dtype == torch.float8_e4m3fn  # stored, not upcast
    assert text_encoder.dtype == torch.float32  # the token embedding keeps the run's precision: so do the embeddings
    image = _pixels(result.images[0])
    assert image.std() > 5 and np.abs(image - folder_image).mean() < 4.0  # the same model, its encoder rounded

"""FLUX.2 [klein] through the real loaders, the Engine and the `easel` CLI, with tiny random-weight
models built from the bundled real configs: diffusers folders, Hugging Face cache snapshots,
ComfyUI's split layout and GGUF transformers; distilled and base told apart; never taken for FLUX.1
or SD (nor they for it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import GenerationRequest, Mode
from engine.cli import main
from engine.files.probe import check_model, inspect_model
from engine.metadata import read_metadata


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flux2")
    out = {}
    for name in ("flux2-klein", "flux2-klein-base"):
        assert main(["make-test-model", str(root / name), "--family", name]) == 0  # as users run it
        out[name] = root / name
    assert main(["make-test-model", str(root / "ComfyUI"), "--family", "flux2-klein", "--layout", "comfyui"]) == 0
    out["comfy"] = root / "ComfyUI" / "models" / "diffusion_models" / "flux-2-klein-tiny.safetensors"
    assert main(["make-test-model", str(root / "gguf"), "--family", "flux2-klein", "--layout", "gguf"]) == 0
    out["gguf"] = root / "gguf" / "models" / "diffusion_models" / "flux-2-klein-tiny-Q8_0.gguf"
    return out


@pytest.fixture(scope="module")
def engine():
    from engine.engine import Engine

    return Engine(device="cpu")


def _pixels(image) -> np.ndarray:
    image = Image.open(image) if isinstance(image, (str, Path)) else image
    return np.asarray(image.convert("RGB")).astype(int)


def _request(model, **changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="a red fox", model=str(model), steps=3, width=64, height=64, seed=5),
                                **changes})


def _install_copy(transformer: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    shutil.copytree(transformer.parents[2], root)
    return root / "models" / "diffusion_models" / transformer.name


def test_make_test_model_lists_both_variants_in_every_layout(capsys):
    assert main(["make-test-model", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("flux2-klein", "flux2-klein-base"):
        assert f"{name} diffusers,comfyui,gguf" in lines


def test_distilled_and_base_are_told_apart_with_their_own_defaults(models):
    distilled, base = check_model(models["flux2-klein"]), check_model(models["flux2-klein-base"])
    assert (distilled.family, distilled.variant, base.variant) == ("flux2", "distilled", "base")
    d, b = families.capabilities(distilled), families.capabilities(base)
    assert (d.label, b.label) == ("FLUX.2 [klein]", "FLUX.2 [klein] Base")
    assert d.defaults == {"width": 1024, "height": 1024, "steps": 4, "guidance_scale": 1.0}
    assert b.defaults == {"width": 1024, "height": 1024, "steps": 50, "guidance_scale": 4.0}
    assert "guidance_scale" not in d.parameters and "negative_prompt" not in d.parameters
    assert "without CFG" in d.reasons["guidance_scale"] and "no effect" in d.reasons["negative_prompt"]
    assert {"guidance_scale", "negative_prompt"} <= set(b.parameters)
    for caps in (d, b):
        assert caps.modes == (Mode.TXT2IMG, Mode.IMG2IMG, Mode.INPAINT) and caps.instruction_edit
        assert caps.samplers == () and "sampler" in caps.reasons and caps.size_step == 16
        assert caps.latent_space == "flux2" and caps.short == "FLUX.2"


def test_a_hugging_face_snapshot_is_named_by_its_repo_with_its_size(models, tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--black-forest-labs--FLUX.2-klein-base-9B" / "snapshots" / "0123abc"
    shutil.copytree(models["flux2-klein-base"], snapshot)
    config = json.loads((snapshot / "transformer/config.json").read_text())
    (snapshot / "transformer/config.json").write_text(json.dumps({**config, "joint_attention_dim": 12288}))
    info = inspect_model(snapshot)  # headers and configs only: the size is the released 9B's text width
    assert (info.name, info.family, info.variant, info.problem) == ("black-forest-labs/FLUX.2-klein-base-9B",
                                                                    "flux2", "base-9b", None)
    caps = families.capabilities(info)
    assert caps.label == "FLUX.2 [klein] Base 9B" and dict(caps.memory_thresholds)["fast"] == 37.0
    config["joint_attention_dim"] = 7680
    (snapshot / "transformer/config.json").write_text(json.dumps(config))
    assert dict(families.capabilities(inspect_model(snapshot)).memory_thresholds)["fast"] == 18.0


def test_other_flux2_transformers_are_named_not_misloaded(models, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(models["flux2-klein"], other)
    config = json.loads((other / "transformer/config.json").read_text())
    (other / "transformer/config.json").write_text(json.dumps({**config, "in_channels": 64}))
    assert "takes 64 input channels (128 = FLUX.2 [klein])" in inspect_model(other).problem
    shutil.rmtree(other / "text_encoder")
    assert inspect_model(other).problem == "incomplete FLUX.2 [klein] folder: missing text_encoder/"


def test_cli_generate_edit_inpaint_and_regenerate_bit_identical(models, tmp_path, capsys):
    model = str(models["flux2-klein"])
    out = tmp_path / "out"
    assert main(["generate", "--model", model, "--prompt", "a (red:1.3) fox", "--width", "72", "--height", "64",
                 "--steps", "3", "--seed", "11", "--out", str(out / "t.png")]) == 0
    captured = capsys.readouterr()
    assert "16 px grid" in captured.err and "Prompt weights" in captured.err
    source = out / "t.png"
    assert Image.open(source).size == (72, 64)
    text = read_metadata(source).raw["parameters"]
    assert "Steps: 3" in text and "CFG scale: 1" in text and "Sampler:" not in text
    assert main(["regenerate", str(source), "--model", model, "--out", str(out / "again.png")]) == 0
    assert np.array_equal(_pixels(source), _pixels(out / "again.png"))

    # img2img is an edit of the input image by the prompt (Klein's reference image)
    assert main(["img2img", "--model", model, "--prompt", "make it blue", "--init", str(source), "--steps", "3",
                 "--seed", "11", "--out", str(out / "i.png")]) == 0
    assert Image.open(out / "i.png").size == (72, 64)
    assert not np.array_equal(_pixels(out / "i.png"), _pixels(source))

    mask = Image.new("L", (72, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(tmp_path / "mask.png")
    assert main(["inpaint", "--model", model, "--prompt", "a fox", "--init", str(source), "--mask",
                 str(tmp_path / "mask.png"), "--steps", "3", "--mask-blur", "0", "--seed", "2",
                 "--out", str(out / "p.png")]) == 0
    painted, original = _pixels(out / "p.png"), _pixels(source)
    keep = np.asarray(mask) == 0
    assert np.array_equal(painted[keep], original[keep])
    assert not np.array_equal(painted[~keep], original[~keep])


def test_the_reference_image_steers_the_edit(models, engine):
    rng = np.random.default_rng(1)
    red = Image.new("RGB", (64, 64), (220, 30, 30))
    noise = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    request = _request(models["flux2-klein"], mode=Mode.IMG2IMG, init_image=red, strength=0.5)
    first = engine.generate(request)
    other = engine.generate(request.replace(init_image=noise))
    assert not np.array_equal(_pixels(first.images[0]), _pixels(other.images[0]))
    # Klein takes no strength for the edit: another value makes the same image.
    assert np.array_equal(_pixels(first.images[0]), _pixels(engine.generate(request.replace(strength=0.9)).images[0]))


def test_distilled_runs_without_cfg_and_base_uses_cfg_and_the_negative_prompt(models, engine):
    distilled = _request(models["flux2-klein"], negative_prompt="blurry", guidance_scale=1.0)
    result = engine.generate(distilled)
    assert result.request.guidance_scale == 1.0 and any("takes no negative prompt" in n for n in result.notices)
    same = engine.generate(distilled.replace(guidance_scale=7.0))
    assert same.request.guidance_scale == 1.0 and np.array_equal(_pixels(result.images[0]), _pixels(same.images[0]))
    # The inpaint sibling runs the same distilled model (is_distilled carried over): CFG stays off there too.
    inpaint = engine.runner.pipeline(Mode.INPAINT)
    assert inpaint.config.is_distilled is True

    base = _request(models["flux2-klein-base"], guidance_scale=4.0)
    plain = engine.generate(base)
    negative = engine.generate(base.replace(negative_prompt="blurry, dark"))
    assert not np.array_equal(_pixels(plain.images[0]), _pixels(negative.images[0]))
    assert not np.array_equal(_pixels(plain.images[0]), _pixels(engine.generate(base.replace(guidance_scale=1.0)).images[0]))


def test_split_layout_and_gguf_generate_the_pixels_of_the_folder(models, engine):
    folder = engine.generate(_request(models["flux2-klein"]))
    for path, fmt in ((models["comfy"], "safetensors"), (models["gguf"], "gguf")):
        info = check_model(path)
        assert (info.family, info.format, info.variant) == ("flux2", fmt, "distilled")
        result = engine.generate(_request(path))
        diff = np.abs(_pixels(result.images[0]) - _pixels(folder.images[0]))
        if fmt == "safetensors":
            assert diff.max() == 0  # the same weights, assembled from ComfyUI's parts
        else:
            assert 0 < diff.max() <= 16  # Q8_0: quantized, still the same image
        assert engine.runner.info.format == fmt


def test_the_base_file_is_told_by_its_released_name(models, tmp_path):
    transformer = _install_copy(models["comfy"], tmp_path)
    base = transformer.with_name("flux-2-klein-base-4b-tiny.safetensors")
    transformer.rename(base)
    info = check_model(base)
    assert (info.family, info.variant) == ("flux2", "base")
    assert "guidance_scale" in families.capabilities(info).parameters


@pytest.mark.parametrize("part,line", [
    ("text_encoders/qwen_3_4b.safetensors",
     "this FLUX.2 transformer needs a Qwen3 text encoder: put qwen_3_4b.safetensors in {models}/text_encoders"),
    ("vae/flux2-vae.safetensors", "this FLUX.2 transformer needs the FLUX.2 VAE: put flux2-vae.safetensors in {models}/vae"),
])
def test_a_missing_part_is_named_in_one_line(models, tmp_path, part, line):
    transformer = _install_copy(models["comfy"], tmp_path)
    root = transformer.parents[1]
    (root / part).unlink()
    info = inspect_model(transformer)
    assert info.problem == line.format(models=root) and "\n" not in info.problem


def test_no_qwen_tokenizer_on_the_computer_says_which_files_to_add(models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    transformer = _install_copy(models["comfy"], tmp_path)
    shutil.rmtree(transformer.parents[2] / "comfy")
    problem = inspect_model(transformer).problem
    assert problem.startswith("the Qwen3 tokenizer files are not on this computer: put tokenizer.json")
    assert "\n" not in problem


def test_a_flux2_file_is_never_flux1_or_sd_and_neither_is_taken_for_it(models, tmp_path):
    transformer = _install_copy(models["comfy"], tmp_path)
    root = transformer.parents[1]
    assert main(["make-test-model", str(tmp_path / "sd15.safetensors"), "--family", "sd15", "--layout",
                 "single-file"]) == 0
    assert main(["make-test-model", str(tmp_path / "flux1"), "--family", "flux1-schnell", "--layout", "comfyui"]) == 0
    flux1 = tmp_path / "flux1" / "models" / "diffusion_models" / "flux1-schnell-tiny.safetensors"
    (root / "checkpoints").mkdir()
    among_sd = root / "checkpoints" / "klein.safetensors"  # Forge users keep everything among checkpoints
    shutil.copy(transformer, among_sd)
    shutil.copy(tmp_path / "sd15.safetensors", root / "checkpoints" / "sd15.safetensors")
    assert (check_model(among_sd).family, check_model(among_sd).variant) == ("flux2", "distilled")
    assert check_model(root / "checkpoints" / "sd15.safetensors").family == "sd1"
    shutil.copy(tmp_path / "sd15.safetensors", root / "diffusion_models" / "sd15.safetensors")
    assert check_model(root / "diffusion_models" / "sd15.safetensors").family == "sd1"
    # FLUX.1 beside FLUX.2: each is its own family, and FLUX.1's VAE is not taken for FLUX.2's
    assert inspect_model(flux1).family == "flux1"
    shutil.copy(flux1, root / "diffusion_models" / flux1.name)
    assert inspect_model(root / "diffusion_models" / flux1.name).family == "flux1"
    (root / "vae" / "flux2-vae.safetensors").unlink()
    shutil.copy(tmp_path / "flux1" / "models" / "vae" / "ae.safetensors", root / "vae" / "ae.safetensors")
    assert "needs the FLUX.2 VAE" in inspect_model(transformer).problem


def test_the_preview_shows_the_32_channel_latents_through_flux2s_factors():
    import torch

    from engine.core.previews import Previews, unpack_2x2

    # Packed tokens (B, (H/16)*(W/16), 128) of a 64 px image: channel 3 (bright in every colour in the
    # FLUX.2 fit) raised over the left half, channel 8 (dark) over the right half.
    latents = torch.zeros(1, 32, 8, 8)
    latents[:, 3, :, :4] = 2.0
    latents[:, 8, :, 4:] = 2.0
    packed = latents.view(1, 32, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, 16, 128)
    assert torch.equal(unpack_2x2(packed, 64, 64), latents)
    image = np.asarray(Previews("flux2", None, "cpu", torch.float32).for_size((64, 64))(packed)).astype(int)
    assert image.shape == (64, 64, 3)
    assert image[32, 8].min() > 170 and image[32, 56].max() < 90


@pytest.mark.slow
def test_inpainting_above_one_megapixel_comes_back_at_the_asked_size(models, engine):
    """Flux2KleinInpaintPipeline works on at most 1 MP: a larger region is made smaller, scaled back,
    pasted back, with a note; outside the mask the source stays."""
    size = (1040, 1024)
    rng = np.random.default_rng(2)
    source = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    mask = Image.new("L", size, 0)
    mask.paste(255, (300, 300, 700, 700))
    result = engine.generate(_request(models["flux2-klein"], mode=Mode.INPAINT, init_image=source, mask=mask,
                                      width=size[0], height=size[1], steps=2, strength=1.0, mask_blur=0))
    assert result.images[0].size == size
    assert any("at most one megapixel" in n for n in result.notices)
    keep = np.asarray(mask) == 0
    assert np.array_equal(_pixels(result.images[0])[keep], _pixels(source)[keep])


def test_a_9b_transformer_asks_for_qwen3_8b_and_never_takes_the_4b_encoder(models, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    transformer = _install_copy(models["comfy"], tmp_path)
    tensors = load_file(transformer)
    tensors["txt_in.weight"] = torch.zeros(tensors["txt_in.weight"].shape[0], 12288)  # Qwen3-8B's 3 x 4096
    nine = transformer.with_name("flux-2-klein-9b.safetensors")
    save_file(tensors, nine)
    transformer.unlink()
    info = inspect_model(nine)  # the tiny qwen_3_4b.safetensors is beside it, and is not taken
    assert (info.family, info.variant) == ("flux2", "distilled-9b")
    assert info.problem == ("this FLUX.2 [klein] 9B transformer needs a Qwen3-8B text encoder: put "
                            f"qwen_3_8b.safetensors in {nine.parents[1] / 'text_encoders'}")

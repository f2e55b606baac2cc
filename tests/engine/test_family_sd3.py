"""Stable Diffusion 3.5 (Large / Large Turbo / Medium): folders, HF snapshots and all-in-one files
told apart and run, the optional T5 encoder, the variant defaults, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import families
from engine.api import GenerationRequest, InvalidRequest, Mode, UnsupportedModel
from engine.cli import main
from engine.files.probe import check_model, inspect_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> path of the tiny SD 3.5 test models, written once (``easel make-test-model`` writers)."""
    root = tmp_path_factory.mktemp("sd3")
    built: dict[str, Path] = {}

    def get(name: str, layout: str = "diffusers") -> Path:
        key = f"{name}:{layout}"
        if key not in built:
            _family, model = families.test_models()[name]
            built[key] = Path(model.write(root / layout / name, layout))
        return built[key]

    return get


def _request(path, **changes) -> GenerationRequest:
    fields = dict(prompt="a red fox in the snow", model=str(path), seed=5, steps=3, width=64, height=64,
                  guidance_scale=3.0)
    fields.update(changes)
    return GenerationRequest(**fields)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB")).astype(int)


def test_variants_are_told_apart_with_their_defaults(models):
    medium = check_model(models("sd35-medium"))
    large = check_model(models("sd35-large"))
    turbo = check_model(models("sd35-large-turbo"))
    assert {i.family for i in (medium, large, turbo)} == {"sd3"}
    labels = {i.variant: families.capabilities(i).label for i in (medium, large, turbo)}
    assert labels == {"medium": "SD 3.5 Medium", "large": "SD 3.5 Large", "turbo": "SD 3.5 Large Turbo (4 steps)"}
    assert {"steps": 40, "guidance_scale": 4.5, "width": 1024, "height": 1024}.items() <= families.defaults(medium).items()
    assert (families.defaults(large)["steps"], families.defaults(large)["guidance_scale"]) == (28, 3.5)
    caps = families.capabilities(turbo)
    assert (caps.defaults["steps"], caps.defaults["guidance_scale"]) == (4, 0.0)
    assert "guidance_scale" not in caps.parameters and "without CFG" in caps.reasons["guidance_scale"]
    assert "negative_prompt" not in caps.parameters
    for info in (medium, large, turbo):
        caps = families.capabilities(info)
        assert caps.size_step == 16 and caps.samplers == () and "sampler" in caps.reasons
        assert caps.memory_thresholds and caps.latent_space == "sd3"


def test_an_hf_cache_snapshot_is_named_after_its_repo(models, tmp_path):
    snapshot = tmp_path / "hub" / "models--stabilityai--stable-diffusion-3.5-large-turbo" / "snapshots" / ("a" * 40)
    shutil.copytree(models("sd35-large"), snapshot)  # a Large folder, its index naming no repo
    assert check_model(snapshot).variant == "turbo"
    assert check_model(models("sd35-large")).variant == "large"


def test_a_folder_without_t5_runs_on_clip_with_one_notice(shared_engine, models):
    path = models("sd35-medium-no-t5")
    index = json.loads((path / "model_index.json").read_text())
    assert index["text_encoder_3"] == [None, None] and not (path / "text_encoder_3").exists()
    assert check_model(path).usable
    result = shared_engine.generate(_request(path))
    assert [n for n in result.notices if "T5" in n] and len([n for n in result.notices if "T5" in n]) == 1
    assert _pixels(result).std() > 1
    with_t5 = shared_engine.generate(_request(models("sd35-medium")))
    assert not [n for n in with_t5.notices if "T5" in n]
    # Without T5's 9.5 GB, "auto" asks for less free VRAM before it picks a preset.
    lean = dict(families.capabilities(check_model(path)).memory_thresholds)
    full = dict(families.capabilities(check_model(models("sd35-medium"))).memory_thresholds)
    assert all(lean[p] < full[p] for p in ("fast", "balanced", "low"))


def test_a_partial_folder_says_what_is_missing(models, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(models("sd35-medium"), partial)
    shutil.rmtree(partial / "text_encoder_2")
    info = inspect_model(partial)
    assert not info.usable and "incomplete SD 3.5 folder: missing text_encoder_2/" in info.problem


def test_turbo_runs_without_cfg_and_says_so(shared_engine, models):
    path = models("sd35-large-turbo")
    result = shared_engine.generate(_request(path, guidance_scale=5.0, negative_prompt="blurry"))
    assert result.request.guidance_scale == 0.0 and result.request.negative_prompt == ""
    assert any("without CFG" in n for n in result.notices)
    plain = shared_engine.generate(_request(path, guidance_scale=0.0))
    assert np.array_equal(_pixels(result), _pixels(plain))


def test_a_size_off_the_16_px_grid_is_padded_and_cropped_back(shared_engine, models):
    path = models("sd35-medium")
    made = shared_engine.generate(_request(path, width=72, height=88))
    assert made.images[0].size == (72, 88)
    source = Image.fromarray(np.random.default_rng(1).integers(0, 255, (72, 72, 3), dtype=np.uint8))
    mask = Image.new("L", (72, 72), 0)
    ImageDraw.Draw(mask).rectangle((8, 8, 40, 30), fill=255)
    edited = shared_engine.generate(_request(path, mode=Mode.INPAINT, width=72, height=72, init_image=source,
                                             mask=mask, strength=1.0, mask_blur=0))
    out = np.asarray(edited.images[0]).astype(int)
    assert edited.images[0].size == (72, 72)
    assert np.array_equal(out[34:], np.asarray(source).astype(int)[34:])  # outside the mask: untouched


def test_weights_are_stripped_with_a_notice_and_change_nothing(shared_engine, models):
    path = models("sd35-medium")
    weighted = shared_engine.generate(_request(path, prompt="a (red:1.4) fox in the snow"))
    plain = shared_engine.generate(_request(path, prompt="a red fox in the snow"))
    assert any("do not apply to SD 3.5" in n for n in weighted.notices)
    assert np.array_equal(_pixels(weighted), _pixels(plain))


# ---------------------------------------------------------------------------------------- single files


def test_an_all_in_one_file_is_sd3_and_gives_the_folders_pixels(shared_engine, models, tmp_path):
    single = models("sd35-medium", "single-file")
    info = check_model(single)
    assert (info.family, info.kind, info.format) == ("sd3", "checkpoint", "safetensors")
    assert families.capabilities(info).label == "SD 3.5 Medium"  # told from the header (dual attention)
    assert families.capabilities(check_model(models("sd35-large", "single-file"))).label == "SD 3.5 Large"
    turbo = check_model(models("sd35-large-turbo", "single-file"))
    assert families.capabilities(turbo).label.startswith("SD 3.5 Large Turbo")
    # The tiny T5 tokenizers are trained per build (not bit-stable): give the file the folder's one.
    same = tmp_path / "same" / single.name
    shutil.copytree(single.parent, same.parent)
    shutil.rmtree(same.parent / "t5xxl_tokenizer")
    shutil.copytree(models("sd35-medium") / "tokenizer_3", same.parent / "t5xxl_tokenizer")
    from_file = shared_engine.generate(_request(same))
    from_folder = shared_engine.generate(_request(models("sd35-medium")))
    assert np.array_equal(_pixels(from_file), _pixels(from_folder))
    assert not from_file.notices


def test_a_file_without_its_t5_tokenizer_runs_on_clip_and_says_where_to_put_it(shared_engine, models, tmp_path):
    lone = tmp_path / "lone" / "sd35.safetensors"
    lone.parent.mkdir()
    shutil.copyfile(models("sd35-medium", "single-file"), lone)
    result = shared_engine.generate(_request(lone))
    text = " ".join(result.notices)
    assert "T5 tokenizer is not on this computer" in text and str(lone.parent / "t5xxl_tokenizer") in text
    assert _pixels(result).std() > 1


def _rewrite(source: Path, dest: Path, keep) -> Path:
    from safetensors.torch import load_file, save_file

    save_file({k: v for k, v in load_file(str(source)).items() if keep(k)}, str(dest))
    return dest


def test_a_transformer_only_file_says_in_one_line_what_is_missing(models, tmp_path):
    only = _rewrite(models("sd35-large", "single-file"), tmp_path / "sd35-transformer.safetensors",
                    lambda k: k.startswith("model.diffusion_model."))
    with pytest.raises(UnsupportedModel) as caught:
        check_model(only)
    line = str(caught.value)
    assert "\n" not in line and "this SD 3.5 transformer needs a CLIP-L text encoder: put clip_l.safetensors" in line
    assert inspect_model(only).family == "sd3"


def test_an_sd_checkpoint_stays_sd_and_an_sd3_file_is_never_sd(models, tmp_path):
    from engine.testmodels import make_test_model

    sd = check_model(make_test_model(tmp_path / "sd15.safetensors", "sd15", single_file=True))
    assert sd.family == "sd1" and families.family_for(sd).name == "sd"
    sd3 = check_model(models("sd35-medium", "single-file"))
    assert families.family_for(sd3).name == "sd3"


# ---------------------------------------------------------------------------------------- CLI


def test_cli_generate_img2img_inpaint_and_regenerate(models, tmp_path, capsys):
    path = str(models("sd35-medium"))
    common = ["--model", path, "--prompt", "a lantern", "--steps", "3", "--seed", "9", "--cfg", "4",
              "--width", "64", "--height", "64"]
    first = tmp_path / "t2i.png"
    assert main(["generate", *common, "--out", str(first)]) == 0, capsys.readouterr().err
    again = tmp_path / "again.png"
    assert main(["regenerate", str(first), "--model", path, "--out", str(again)]) == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))

    source = tmp_path / "source.png"
    Image.new("RGB", (64, 64), (30, 140, 200)).save(source)
    i2i = tmp_path / "i2i.png"
    assert main(["img2img", *common, "--init", str(source), "--strength", "0.7", "--out", str(i2i)]) == 0, \
        capsys.readouterr().err
    assert Image.open(i2i).size == (64, 64)

    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    mask.save(tmp_path / "mask.png")
    out = tmp_path / "inpaint.png"
    assert main(["inpaint", *common, "--init", str(source), "--mask", str(tmp_path / "mask.png"),
                 "--strength", "1.0", "--mask-blur", "0", "--out", str(out)]) == 0, capsys.readouterr().err
    pixels, src = np.asarray(Image.open(out).convert("RGB")).astype(int), np.asarray(Image.open(source)).astype(int)
    assert np.array_equal(pixels[:8], src[:8])  # outside the mask: untouched
    assert np.abs(pixels[24:40, 24:40] - src[24:40, 24:40]).mean() > 5  # inside: repainted


def test_make_test_model_lists_every_sd3_model_and_layout(capsys, tmp_path):
    assert main(["make-test-model", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("sd35-medium", "sd35-large", "sd35-large-turbo", "sd35-medium-no-t5"):
        line = next(line for line in listed.splitlines() if line.split()[0] == name)
        assert "diffusers" in line and "single-file" in line and "comfyui" in line and "gguf" in line
    dest = tmp_path / "cli-file"
    assert main(["make-test-model", "--family", "sd35-large-turbo", "--layout", "single-file", str(dest)]) == 0
    written = next(dest.glob("*.safetensors"))
    assert families.capabilities(check_model(written)).label.startswith("SD 3.5 Large Turbo")


def test_the_sd3_preview_map_reads_16_channels():
    import torch

    from engine.core.previews import latents_to_preview

    latents = torch.zeros(1, 16, 8, 8)
    latents[0, 15] = 3.0  # the last channel darkens every colour in SD3's fit; the SD map ignores it
    dark, flat = latents_to_preview(latents, "sd3"), latents_to_preview(torch.zeros(1, 16, 8, 8), "sd3")
    assert np.asarray(dark).mean() < np.asarray(flat).mean() - 40


def test_a_header_with_only_joint_blocks_is_sd3_not_sd_nor_flux(tmp_path):
    from safetensors.torch import save_file
    import torch

    path = tmp_path / "sd3.safetensors"
    save_file({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": torch.zeros(6, 2)}, str(path))
    info = inspect_model(path)
    assert (info.kind, info.family, info.usable) == ("checkpoint", "sd3", False)
    assert info.problem.startswith("this SD 3.5 file holds the transformer but not its CLIP-L, CLIP-G, VAE")
    assert families.family_label(info) == "SD 3.5"

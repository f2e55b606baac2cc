"""Qwen-Image as a user meets it: the folder is recognised (also as a Hugging Face cache snapshot),
Easel's image is the pipeline's own, CFG and the negative prompt matter, every mode regenerates
bit-identically, an incomplete Edit folder and a lone transformer file each get one plain line, and the CLI
runs it. The contract suite covers progress, cancel, presets, OOM and metadata.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import GenerationRequest, Mode, ModelError, UnsupportedModel
from engine.cli import main
from engine.files.probe import check_model, inspect_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return families.test_models()["qwen-image"][1].write(tmp_path_factory.mktemp("qwen") / "Qwen-Image-tiny",
                                                         "diffusers")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from engine.engine import Engine

    return Engine(device="cpu", state_dir=tmp_path_factory.mktemp("state"))


def _request(model, **changes) -> GenerationRequest:
    fields = dict(prompt="a lighthouse on a rocky coast", model=str(model), seed=3, steps=3, width=64, height=64,
                  guidance_scale=4.0)
    fields.update(changes)
    return GenerationRequest(**fields)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB")).astype(np.int16)


def _source():
    rng = np.random.default_rng(9)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")


def test_the_folder_is_qwen_image_with_its_defaults(model, tmp_path):
    info = inspect_model(model)
    assert (info.family, info.kind, info.problem) == ("qwen_image", "checkpoint", None)
    caps = families.capabilities(info)
    assert families.family_label(info) == "Qwen-Image"
    assert caps.native == (1328, 1328) and caps.defaults["steps"] == 50 and caps.defaults["guidance_scale"] == 4.0
    assert not caps.samplers and caps.reasons["sampler"] and caps.size_step == 16
    assert {"negative_prompt", "guidance_scale", "strength"} <= set(caps.parameters)
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen-Image" / "snapshots" / ("b" * 40)
    shutil.copytree(model, snapshot)
    assert check_model(snapshot).name == "Qwen/Qwen-Image"


def test_an_edit_folder_without_its_processor_says_what_is_missing(model, tmp_path):
    edit = tmp_path / "Qwen-Image-Edit"
    shutil.copytree(model, edit)
    index = json.loads((edit / "model_index.json").read_text())
    (edit / "model_index.json").write_text(json.dumps({**index, "_class_name": "QwenImageEditPlusPipeline"}))
    with pytest.raises(ModelError) as caught:
        check_model(edit)
    assert "Qwen-Image-Edit" in str(caught.value) and "processor/" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_image_is_the_pipelines_own(model, engine):
    import diffusers
    import torch

    result = engine.generate(_request(model, negative_prompt="fog"))
    pipe = diffusers.QwenImagePipeline.from_pretrained(model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    direct = pipe(prompt="a lighthouse on a rocky coast", negative_prompt="fog", true_cfg_scale=4.0, height=64,
                  width=64, num_inference_steps=3, generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert np.abs(_pixels(result) - np.asarray(direct).astype(np.int16)).max() <= 1
    assert _pixels(result).std() > 5


def test_cfg_and_the_negative_prompt_matter(model, engine):
    guided = engine.generate(_request(model))
    unguided = engine.generate(_request(model, guidance_scale=1.0))
    negative = engine.generate(_request(model, negative_prompt="a sailing boat"))
    assert not np.array_equal(_pixels(guided), _pixels(unguided))
    assert not np.array_equal(_pixels(guided), _pixels(negative))


def test_every_mode_regenerates_bit_identically(model, engine):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    for mode, extra in ((Mode.TXT2IMG, {}), (Mode.IMG2IMG, {"init_image": _source(), "strength": 0.7}),
                        (Mode.INPAINT, {"init_image": _source(), "mask": mask, "strength": 1.0})):
        first = engine.generate(_request(model, mode=mode, **extra))
        again = engine.generate(_request(model, mode=mode, **extra))
        assert first.images[0].size == (64, 64)
        assert np.array_equal(_pixels(first), _pixels(again)), mode
        if mode is Mode.INPAINT:
            kept = np.asarray(first.images[0])[:8, :8].astype(np.int16) - np.asarray(_source())[:8, :8]
            assert np.abs(kept).max() <= 2


def test_a_size_off_the_grid_is_made_on_the_grid_and_brought_back(model, engine):
    result = engine.generate(_request(model, width=64, height=88))
    assert result.images[0].size == (64, 88) and any("16 px grid" in n for n in result.notices)


def test_the_preview_is_the_unpacked_latents_in_the_wan_vae_space(model, engine):
    events = []
    engine.generate(_request(model, steps=4), lambda p: events.append(p))
    previews = [p.preview for p in events if p.preview is not None]
    assert previews and all(p.size == (64, 64) for p in previews)
    assert np.asarray(previews[-1]).std() > 0


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."], ids=["diffusers-names", "comfyui-prefix"])
def test_a_lone_transformer_file_is_named_qwen_image(model, tmp_path, prefix, engine):
    from safetensors.torch import load_file, save_file

    state = load_file(str(model / "transformer" / "diffusion_pytorch_model.safetensors"))
    path = tmp_path / "diffusion_models" / "qwen_image_bf16.safetensors"
    path.parent.mkdir()
    save_file({prefix + k: v for k, v in state.items()}, str(path))
    info = inspect_model(path)
    assert info.family == "qwen_image" and "qwen_2.5_vl_7b" in info.problem and "\n" not in info.problem
    with pytest.raises(UnsupportedModel) as caught:
        engine.generate(_request(path))
    assert "Qwen-Image transformer" in str(caught.value)


def test_z_image_and_flux_files_are_not_taken_for_qwen_image(tmp_path):
    import torch
    from safetensors.torch import save_file

    flux = tmp_path / "flux1-dev.safetensors"  # FLUX's original names have img_in / txt_in too
    save_file({"img_in.weight": torch.zeros(1), "txt_in.weight": torch.zeros(1),
               "double_blocks.0.img_mod.lin.weight": torch.zeros(1)}, str(flux))
    assert inspect_model(flux).family != "qwen_image"


def test_the_cli_runs_qwen_image(tmp_path, capsys, no_network):
    model = tmp_path / "Qwen-Image-cli"
    assert main(["make-test-model", str(model), "--family", "qwen-image"]) == 0
    out = tmp_path / "out.png"
    code = main(["generate", "--model", str(model), "--prompt", "a sign that says OPEN", "--steps", "2",
                 "--seed", "4", "--width", "64", "--height", "64", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    parameters = Image.open(out).text["parameters"]
    assert "Steps: 2" in parameters and "Sampler:" not in parameters
    assert no_network == []


def test_a_lone_gguf_transformer_names_the_parts_it_needs(model, tmp_path):
    from safetensors.torch import load_file

    from engine.testmodels import write_gguf

    state = load_file(str(model / "transformer" / "diffusion_pytorch_model.safetensors"))
    path = write_gguf(state, tmp_path / "qwen-image-Q8_0.gguf", arch="qwen_image")
    info = inspect_model(path)
    assert info.family == "qwen_image" and info.format == "gguf"
    assert info.problem.startswith("this Qwen-Image transformer needs a Qwen2.5-VL-7B text encoder: put "
                                   "qwen_2.5_vl_7b.safetensors in") and "\n" not in info.problem

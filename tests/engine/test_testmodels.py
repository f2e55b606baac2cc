"""Test models, bundled configs and the original single-file layout.

The claim under test: a single-file checkpoint loads offline, through diffusers' own single-file
loader and a config folder derived from nothing but its tensor shapes, into exactly the modules the
equivalent diffusers folder holds; and for real full-size checkpoints the derived config is the real
model's config. Fast tests use tiny models; ``-m slow`` builds full-size random checkpoints.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import pytest
import torch

from engine import architectures as arch
from engine.ldm_layout import to_original_layout
from engine.testmodels import FAMILIES, build_components, build_configs, make_test_model, pipeline_class

MODULES = ("unet", "vae", "text_encoder", "text_encoder_2")
CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat", real CLIP tokenizer


def effective(name: str, cfg: dict) -> dict:
    """A component config with every default filled in, as the instantiated module would have it."""
    import diffusers
    import transformers

    if name.startswith("text_encoder"):
        d = transformers.CLIPTextConfig.from_dict(dict(cfg)).to_dict()
        for k in ("transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype"):
            d.pop(k, None)
        return json.loads(json.dumps(d))
    cls = {"unet": diffusers.UNet2DConditionModel, "vae": diffusers.AutoencoderKL}[name]
    params = inspect.signature(cls.__init__).parameters
    out = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    out.update({k: v for k, v in cfg.items() if k in params})
    return json.loads(json.dumps(out))


def assert_same_architecture(derived: dict, expected: dict) -> None:
    for name in MODULES:
        assert (name in derived) == (name in expected), name
        if name in expected:
            a, b = effective(name, derived[name]), effective(name, expected[name])
            diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
            assert not diff, f"{name} differs (derived, expected): {diff}"


def safety_kwargs(family: str) -> dict:
    if arch.engine_family(family) == "sdxl":
        return {}
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def load_single_file(family: str, path: Path, config_root: Path, **kwargs):
    ef, inpaint, pred = arch.TEST_FAMILIES[family]
    config = arch.single_file_config_dir(ef, inpaint, pred, arch.safetensors_shapes(path), config_root)
    return pipeline_class(family).from_single_file(
        str(path), config=str(config), local_files_only=True, **safety_kwargs(family), **kwargs
    )


def meta_components(configs: dict) -> dict:
    """Full-size modules with no memory behind them (shapes only)."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    out = {}
    with init_empty_weights():
        for name in MODULES:
            if name in configs:
                library, class_name = configs["model_index"][name]
                cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
                if library == "diffusers":
                    out[name] = cls.from_config(configs[name])
                else:
                    out[name] = cls(cls.config_class.from_dict(configs[name]))
    return out


# --------------------------------------------------------------------------------------------
# Bundled resources
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, pad_id", [("clip", 49407), ("clip-pad-bang", 0)])
def test_bundled_tokenizer_is_the_real_clip_tokenizer(tmp_path, kind, pad_id):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(arch.write_tokenizer(tmp_path / kind, kind)), local_files_only=True)
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == CAT_IDS
    padded = tok("a photo of a cat", padding="max_length", max_length=tok.model_max_length, truncation=True)
    assert tok.model_max_length == 77 and len(padded.input_ids) == 77
    assert padded.input_ids[7:] == [pad_id] * 70
    long = tok("word " * 200, padding="max_length", max_length=tok.model_max_length, truncation=True)
    assert len(long.input_ids) == 77 and long.input_ids[-1] == 49407


def test_tokenizer_files_are_not_duplicated():
    root = arch.tokenizers_dir()
    assert (root / "clip" / "vocab.json").is_file() and (root / "clip" / "merges.txt").is_file()
    assert not (root / "clip-pad-bang" / "vocab.json").exists()


@pytest.mark.parametrize("key", arch.CONFIG_KEYS)
def test_family_rules_reproduce_the_real_configs(key):
    """The fixed rules (heads, activations, groups) applied to real sizes give the real config."""
    bundled = arch.bundled_configs(key)
    assert_same_architecture(arch.component_configs(key), bundled)
    index = bundled["model_index"]
    assert index.get("safety_checker", [None, None]) == [None, None]  # SDXL pipelines have none at all
    assert index["feature_extractor"] == [None, None] and index["image_encoder"] == [None, None]


def test_names_and_native_sizes():
    assert arch.family_key("sd1", False, "epsilon") == "sd1"
    assert arch.family_key("sd1", True, "epsilon") == "sd1-inpaint"
    assert arch.family_key("sd2", False, "v_prediction") == "sd2-v"
    assert arch.family_key("sd2", False, "epsilon") == "sd2-base"
    assert arch.family_key("sd2", True, "epsilon") == "sd2-inpaint"
    assert arch.family_key("sdxl", False, "epsilon") == "sdxl"
    assert arch.family_key("sdxl", True, "epsilon") == "sdxl-inpaint"
    sizes = {k: arch.native_size(k) for k in (*arch.CONFIG_KEYS, *FAMILIES, "sd1", "sd2", "sdxl")}
    assert sizes == {
        "sd1": 512, "sd1-inpaint": 512, "sd2-base": 512, "sd2-v": 768, "sd2-inpaint": 512, "sdxl": 1024,
        "sdxl-inpaint": 1024, "sd15": 512, "sd15-inpaint": 512, "sd2": 768,
    }
    with pytest.raises(ValueError):
        arch.family_key("sd3", False, "epsilon")


# --------------------------------------------------------------------------------------------
# Full-size architectures, shapes only (no weights)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", arch.CONFIG_KEYS)
def test_full_size_header_derives_the_real_config(key, tmp_path):
    bundled = arch.bundled_configs(key)
    family = arch.engine_family(key)
    shapes = {k: tuple(v.shape) for k, v in to_original_layout(meta_components(bundled), family).items()}
    # What real checkpoints carry beyond the diffusers weights must not change the answer.
    if family == "sd1":
        shapes["cond_stage_model.transformer.text_model.embeddings.position_ids"] = (1, 77)
    if family == "sd2":  # the unused 24th OpenCLIP layer and the projection SD2 never uses
        p = "cond_stage_model.model."
        for k in [k for k in shapes if k.startswith(p + "transformer.resblocks.22.")]:
            shapes[k.replace("resblocks.22.", "resblocks.23.")] = shapes[k]
        shapes[p + "text_projection"] = (1024, 1024)
    if family == "sdxl":
        shapes["conditioner.embedders.1.model.logit_scale"] = ()
    prediction = bundled["scheduler"].get("prediction_type", "epsilon")
    dest = arch.single_file_config_dir(family, key.endswith("inpaint"), prediction, shapes, tmp_path / key)
    derived = {name: json.loads((dest / name / "config.json").read_text()) for name in MODULES if (dest / name).is_dir()}
    assert_same_architecture(derived, bundled)
    written = json.loads((dest / "scheduler" / "scheduler_config.json").read_text())
    assert written["prediction_type"] == prediction and written["_class_name"] == bundled["scheduler"]["_class_name"]
    assert json.loads((dest / "model_index.json").read_text()) == bundled["model_index"]
    for folder in arch.tokenizer_kinds(family):
        assert {p.name for p in (dest / folder).iterdir()} == {
            "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}


def test_prediction_type_argument_is_written(tmp_path):
    dest = arch.single_file_config_dir("sd1", False, "v_prediction", {}, tmp_path)
    assert json.loads((dest / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"


# --------------------------------------------------------------------------------------------
# Tiny models: folder and single file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_header_derives_the_tiny_build_config(family, tiny_models):
    path = tiny_models.get(family, single_file=True)
    ef, inpaint, pred = arch.TEST_FAMILIES[family]
    derived = arch.component_configs(arch.family_key(ef, inpaint, pred), arch.sizes_from_shapes(ef, arch.safetensors_shapes(path)))
    assert_same_architecture(derived, build_configs(family, "tiny"))


@pytest.mark.parametrize("family", FAMILIES)
def test_single_file_loads_the_same_modules_as_the_folder(family, tiny_models, tmp_path, no_network):
    folder = pipeline_class(family).from_pretrained(tiny_models.get(family), local_files_only=True, **safety_kwargs(family))
    single = load_single_file(family, tiny_models.get(family, single_file=True), tmp_path / "config")
    assert type(single) is type(folder)
    for name in MODULES:
        a, b = folder.components.get(name), single.components.get(name)
        assert (a is None) == (b is None), name
        if a is None:
            continue
        assert type(a) is type(b)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys(), name
        for key, value in sa.items():
            assert sb[key].device.type != "meta", f"{name}.{key} was never loaded"
            assert value.dtype == sb[key].dtype and torch.equal(value, sb[key]), f"{name}.{key} differs"
        assert effective(name, dict(a.config) if name in ("unet", "vae") else a.config.to_dict()) == effective(
            name, dict(b.config) if name in ("unet", "vae") else b.config.to_dict())
    for tok in ("tokenizer", "tokenizer_2"):
        if folder.components.get(tok) is not None:
            for pipe in (folder, single):
                t = pipe.components[tok]
                assert t("a photo of a cat").input_ids == CAT_IDS and t.model_max_length == 77
            assert folder.components[tok].pad_token == single.components[tok].pad_token
    assert type(single.scheduler) is type(folder.scheduler)
    assert single.scheduler.config.prediction_type == arch.TEST_FAMILIES[family][2]
    # A sampler swap (one scheduler made from another's config) must behave alike for both forms.
    from diffusers import EulerAncestralDiscreteScheduler

    swapped = [dict(EulerAncestralDiscreteScheduler.from_config(p.scheduler.config).config) for p in (folder, single)]
    for cfg in swapped:
        cfg.pop("_use_default_values", None)
    assert swapped[0] == swapped[1]
    if not family.endswith("inpaint"):  # same pixels, as a user would check
        images = []
        for pipe in (folder, single):
            pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
            pipe.set_progress_bar_config(disable=True)
            out = pipe("a lighthouse", num_inference_steps=2, height=64, width=64, output_type="np",
                       generator=torch.Generator().manual_seed(3))
            images.append(out.images[0])
        assert images[0].shape == (64, 64, 3) and (images[0] == images[1]).all()
    assert no_network == []


@pytest.mark.parametrize("family", FAMILIES)
def test_layout_round_trips_through_diffusers_converters(family):
    """diffusers' own LDM->diffusers converters reproduce every weight exactly, none left over."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )

    parts = build_components(family)
    ef = arch.TEST_FAMILIES[family][0]
    ckpt = to_original_layout(parts, ef)
    back = {
        "unet": convert_ldm_unet_checkpoint(ckpt, dict(parts["unet"].config)),
        "vae": convert_ldm_vae_checkpoint(ckpt, dict(parts["vae"].config)),
    }
    if ef in ("sd1", "sdxl"):
        back["text_encoder"] = convert_ldm_clip_checkpoint(ckpt)
    if ef == "sd2":
        back["text_encoder"] = convert_open_clip_checkpoint(parts["text_encoder"], ckpt, "cond_stage_model.model.")
    if ef == "sdxl":
        back["text_encoder_2"] = convert_open_clip_checkpoint(parts["text_encoder_2"], ckpt, "conditioner.embedders.1.model.")
    expected_count = 0
    for name, converted in back.items():
        original = {k.removeprefix("text_model."): v for k, v in parts[name].state_dict().items()}
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        assert converted.keys() == original.keys(), name
        for key, value in original.items():
            assert torch.equal(converted[key].reshape(value.shape), value) and converted[key].shape == value.shape, key
        layers = parts[name].config.num_hidden_layers if name.startswith("text_encoder") else 0
        openclip = name == "text_encoder_2" or (name == "text_encoder" and ef == "sd2")
        expected_count += len(original) - (4 * layers if openclip else 0)  # q,k,v weight+bias -> in_proj pair
    assert len(ckpt) == expected_count  # every original tensor was consumed by a converter


def test_vae_attention_is_stored_as_1x1_convolution(tiny_models):
    shapes = arch.safetensors_shapes(tiny_models.get("sd15", single_file=True))
    assert shapes["first_stage_model.encoder.mid.attn_1.q.weight"] == (64, 64, 1, 1)
    assert shapes["first_stage_model.decoder.mid.attn_1.proj_out.weight"] == (64, 64, 1, 1)
    assert shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 32)


def test_sdxl_single_file_has_both_encoders_in_original_layout(tiny_models):
    shapes = arch.safetensors_shapes(tiny_models.get("sdxl", single_file=True))
    p = "conditioner.embedders.1.model."
    assert shapes[p + "transformer.resblocks.0.attn.in_proj_weight"] == (3 * 64, 64)
    assert shapes[p + "text_projection"] == (64, 48)  # x @ P: [hidden, projection]
    assert shapes["conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight"] == (77, 32)
    assert shapes["model.diffusion_model.label_emb.0.0.weight"][1] == 6 * 8 + 48


def test_tiny_vae_downsamples_8x_like_real_models(tiny_models):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_models.get("sd15"), subfolder="vae", local_files_only=True)
    with torch.no_grad():
        latent = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode()
        image = vae.decode(latent).sample
    assert latent.shape == (1, 4, 8, 8) and image.shape == (1, 3, 64, 64)


def test_single_file_destinations_and_metadata(tmp_path, tiny_models):
    from safetensors import safe_open

    path = make_test_model(tmp_path / "models", "sd2-v", single_file=True)
    assert path == tmp_path / "models" / "sd2-v.safetensors" and path.is_file()
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"modelspec.prediction_type": "v"}
    with safe_open(str(tiny_models.get("sd15", single_file=True)), "pt") as f:
        assert not f.metadata()
    with pytest.raises(ValueError):
        make_test_model(tmp_path / "x.safetensors", "sd15", single_file=False)


def test_weights_are_seeded():
    a, b, c = (build_components("sd15", seed=s)["unet"].state_dict() for s in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv_in.weight"], c["conv_in.weight"])
    # norm scales are random too, so a swapped pair of norms would not go unnoticed
    assert not torch.equal(a["down_blocks.0.resnets.0.norm1.weight"], a["down_blocks.0.resnets.0.norm2.weight"])


def test_unknown_diffusers_keys_are_refused():
    from engine.ldm_layout import open_clip_to_original, unet_to_original, vae_to_original

    with pytest.raises(ValueError):
        unet_to_original({"encoder_hid_proj.weight": torch.zeros(1)}, 2)
    with pytest.raises(ValueError):
        vae_to_original({"encoder.something.weight": torch.zeros(1)})
    with pytest.raises(ValueError):
        open_clip_to_original({"text_model.encoder.layers.0.self_attn.q_proj.weight": torch.zeros(2, 2)})


# --------------------------------------------------------------------------------------------
# Full size (slow): build, write, derive, load
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_full_size_single_file_loads(family, tmp_path, no_network):
    from safetensors import safe_open

    started = time.perf_counter()
    path = make_test_model(tmp_path / f"{family}.safetensors", family, single_file=True, size="full")
    built = time.perf_counter() - started
    size_gb = path.stat().st_size / 1e9

    ef, inpaint, pred = arch.TEST_FAMILIES[family]
    config = arch.single_file_config_dir(ef, inpaint, pred, arch.safetensors_shapes(path), tmp_path / "config")
    derived = {n: json.loads((config / n / "config.json").read_text()) for n in MODULES if (config / n).is_dir()}
    assert_same_architecture(derived, arch.bundled_configs(arch.family_key(ef, inpaint, pred)))

    started = time.perf_counter()
    pipe = pipeline_class(family).from_single_file(
        str(path), config=str(config), local_files_only=True, torch_dtype=torch.float16, **safety_kwargs(family)
    )
    load_s = time.perf_counter() - started
    print(f"\n{family}: full-size single file {size_gb:.2f} GB, built and written in {built:.0f} s, "
          f"from_single_file loaded in {load_s:.1f} s")

    for name in MODULES:
        module = pipe.components.get(name)
        if module is not None:
            assert all(p.device.type == "cpu" for p in module.parameters()), f"{name} has unloaded weights"
    with safe_open(str(path), "pt") as f:
        assert torch.equal(f.get_tensor("model.diffusion_model.input_blocks.0.0.weight"), pipe.unet.conv_in.weight)
        q = f.get_tensor("first_stage_model.decoder.mid.attn_1.q.weight")
        assert torch.equal(q[:, :, 0, 0], pipe.vae.decoder.mid_block.attentions[0].to_q.weight)
    assert pipe.scheduler.config.prediction_type == pred
    assert no_network == []


def test_make_test_model_seed_changes_the_weights(tmp_path, capsys):
    from safetensors.torch import load_file

    from engine.cli import main

    for seed in (0, 0, 5):
        assert main(["make-test-model", str(tmp_path / f"m{seed}-{len(list(tmp_path.iterdir()))}.safetensors"),
                     "--family", "realesrgan-compact", "--seed", str(seed)]) == 0
    a, b, c = (load_file(p) for p in sorted(tmp_path.iterdir()))
    key = next(iter(a))
    assert a[key].equal(b[key]) and not a[key].equal(c[key])  # same seed, same model; another seed, another

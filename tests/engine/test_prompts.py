"""Prompt syntax (A1111) and what it does to the embeddings, LoRAs, embeddings by name, VAE, clip skip,
and that all of it is recorded so ``easel regenerate`` reproduces the image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.api import GenerationRequest
from engine.prompts import encode_prompts, extract_loras, parse_weights, split_break

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, expect", [
    ("a cat", [("a cat", 1.0)]),
    ("a (cat:1.5) dog", [("a ", 1.0), ("cat", 1.5), (" dog", 1.0)]),
    ("(cat)", [("cat", 1.1)]),
    ("((cat))", [("cat", 1.21)]),
    ("[cat]", [("cat", round(1 / 1.1, 6))]),
    ("(a (b:2) c:0.5)", [("a ", 0.5), ("b", 1.0), (" c", 0.5)]),
    (r"\(literal\) x", [("(literal) x", 1.0)]),
    ("(unclosed", [("unclosed", 1.1)]),
    ("stray) bracket", [("stray) bracket", 1.0)]),
    ("time: 12:30", [("time: 12:30", 1.0)]),
])
def test_a1111_weight_syntax(text, expect):
    assert [(f, round(w, 4)) for f, w in parse_weights(text)] == [(f, round(w, 4)) for f, w in expect]


def test_lora_tags_are_taken_out_with_their_weights():
    p = extract_loras("a castle <lora:detail:0.8>, night <lora:film grain> <lora:detail:0.5> <lora:bad:x>")
    assert p.text == "a castle, night"
    assert [(r.name, r.weight) for r in p.loras] == [("film grain", 1.0), ("detail", 0.5)]
    assert p.problems and "bad" in p.problems[0]


def test_break_splits_chunks():
    assert split_break("a red house BREAK a blue sea") == ["a red house", "a blue sea"]
    assert split_break("BREAKFAST") == ["BREAKFAST"]


@pytest.fixture(scope="module")
def sd15_pipe(tiny_models):
    import torch

    from engine.families.sd.loading import load_pipeline

    return load_pipeline(tiny_models.get(), torch.float32)[1]


def test_weighting_changes_the_embeddings_only_where_weighted(sd15_pipe):
    import torch

    with torch.inference_mode():
        plain = encode_prompts(sd15_pipe, "sd1", "a red fox in snow", "")["prompt_embeds"]
        weighted = encode_prompts(sd15_pipe, "sd1", "a red (fox:1.6) in snow", "")["prompt_embeds"]
        bracket = encode_prompts(sd15_pipe, "sd1", "a red [fox] in snow", "")["prompt_embeds"]
    diff = (plain - weighted).abs().sum(-1)[0]
    assert plain.shape == weighted.shape == (1, 77, 32)
    assert diff[3] > 0.1  # "fox" (after BOS, a, red)
    assert diff[1] < 1e-5 and diff[2] < 1e-5  # "a", "red" untouched
    assert not torch.allclose(plain, bracket)


def test_long_prompts_are_chunked_not_cut(sd15_pipe):
    import torch

    long = ", ".join(["a lighthouse on a rocky coast at dusk"] * 12)  # ~100+ tokens
    with torch.inference_mode():
        e = encode_prompts(sd15_pipe, "sd1", long, "blurry")
        cut = encode_prompts(sd15_pipe, "sd1", long + ", golden sky", "blurry")
    assert e["prompt_embeds"].shape[1] in (154, 231)
    assert e["negative_prompt_embeds"].shape == e["prompt_embeds"].shape  # padded to the same length
    assert not torch.allclose(e["prompt_embeds"], cut["prompt_embeds"][:, : e["prompt_embeds"].shape[1]])


def test_text_encoder_runs_once_per_chunk_and_the_empty_prompt_only_to_pad(sd15_pipe):
    """A short prompt and negative cost two text-encoder passes, as in diffusers; the empty prompt's
    encoding (what a shorter side is padded with) is computed only when one side needs padding."""
    import torch

    calls = []
    handle = sd15_pipe.text_encoder.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape))
    long = ", ".join(["a lighthouse on a rocky coast at dusk"] * 12)  # two chunks
    try:
        with torch.inference_mode():
            encode_prompts(sd15_pipe, "sd1", "a red fox in snow", "blurry")
            short_calls = len(calls)
            calls.clear()
            e = encode_prompts(sd15_pipe, "sd1", long, "blurry")
            long_calls = len(calls)
            alone = encode_prompts(sd15_pipe, "sd1", "blurry", "")["prompt_embeds"]
            empty = encode_prompts(sd15_pipe, "sd1", "", "")["prompt_embeds"]
    finally:
        handle.remove()
    assert short_calls == 2
    chunks = e["prompt_embeds"].shape[1] // 77
    assert long_calls == chunks + 1 + 1  # the prompt's chunks, the negative, the empty prompt once
    negative = e["negative_prompt_embeds"]
    assert torch.allclose(negative[:, :77], alone, atol=1e-5)
    assert torch.allclose(negative[:, 77:154], empty, atol=1e-5)  # the padding is the empty prompt


def test_clip_skip_reads_an_earlier_layer(sd15_pipe):
    import torch

    with torch.inference_mode():
        one = encode_prompts(sd15_pipe, "sd1", "a fox", "", clip_skip=1)["prompt_embeds"]
        two = encode_prompts(sd15_pipe, "sd1", "a fox", "", clip_skip=2)["prompt_embeds"]
        ids = sd15_pipe.tokenizer("a fox", padding="max_length", max_length=77, return_tensors="pt").input_ids
        out = sd15_pipe.text_encoder(ids, output_hidden_states=True)
        expect = sd15_pipe.text_encoder.final_layer_norm(out.hidden_states[-2])
    assert torch.allclose(one, out.last_hidden_state, atol=1e-5)
    assert torch.allclose(two, expect, atol=1e-5)


def test_sdxl_prompts_with_weights_and_length(tiny_models):
    import torch

    from engine.families.sd.loading import load_pipeline

    pipe = load_pipeline(tiny_models.get("sdxl"), torch.float32)[1]
    with torch.inference_mode():
        e = encode_prompts(pipe, "sdxl", "a (red:1.4) fox " + "in snow " * 40, "")
    assert e["prompt_embeds"].shape == (1, 154, 96)  # 32 + 64 wide, two chunks
    assert e["pooled_prompt_embeds"].shape == (1, 48)
    assert torch.count_nonzero(e["negative_prompt_embeds"]) == 0  # SDXL: zeros for an empty negative


@pytest.mark.parametrize("text", ["a (red:1.4) fox in snow", "a red fox " + "in snow " * 40, "a fox BREAK in snow"])
def test_sdxl_pooled_prompt_is_the_second_encoders_on_the_plain_text(tiny_models, text):
    """The pooled embedding, taken from the prompt's own pass where it can be, is exactly what a pass
    of the second text encoder over the weight-free, truncated prompt gives."""
    import torch

    from engine.families.sd.loading import load_pipeline

    pipe = load_pipeline(tiny_models.get("sdxl"), torch.float32)[1]
    plain = " ".join(f for part in split_break(text) for f, _ in parse_weights(part))
    with torch.inference_mode():
        pooled = encode_prompts(pipe, "sdxl", text, "blurry")["pooled_prompt_embeds"]
        ids = pipe.tokenizer_2(plain, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        expect = pipe.text_encoder_2(ids).text_embeds
    assert torch.equal(pooled, expect)


# ------------------------------------------------------------------------- add-ons, end to end


@pytest.fixture(scope="module")
def addon_folder(tmp_path_factory):
    from engine.testaddons import make_embedding, make_kind_file, make_lora, make_vae

    folder = tmp_path_factory.mktemp("addons")
    make_lora(folder / "Lora" / "ink.safetensors", "sd15", seed=1)
    make_lora(folder / "Lora" / "paper.safetensors", "sd15", seed=7)
    make_kind_file(folder / "Lora" / "xlstyle.safetensors", "lora", "sdxl")  # never loaded: family differs
    make_embedding(folder / "embeddings" / "fuzzyfox.safetensors", "sd15")
    make_vae(folder / "VAE" / "bright.safetensors", "sd15", seed=5)
    return folder


def _engine_with_folder(folder):
    """An engine whose model library is only ``folder`` (its LoRAs, embeddings and VAEs)."""
    from engine.engine import Engine
    from engine.models import ModelLibrary

    folder.mkdir(parents=True, exist_ok=True)
    return Engine(device="cpu", library=ModelLibrary([str(folder)], include_defaults=False))


@pytest.fixture(scope="module")
def addon_engine(addon_folder):
    return _engine_with_folder(addon_folder)


def _req(model, **kw):
    base = dict(prompt="a red fox in snow", model=str(model), seed=42, steps=3, width=64, height=64, sampler="Euler")
    base.update(kw)
    return GenerationRequest(**base)


def _px(result):
    return np.asarray(result.images[0].convert("RGB")).astype(int)


def test_lora_changes_the_image_is_recorded_and_switches_off(addon_engine, tiny_models):
    model = tiny_models.get()
    plain = addon_engine.generate(_req(model))
    with_lora = addon_engine.generate(_req(model, prompt="a red fox in snow <lora:ink:0.9>"))
    two = addon_engine.generate(_req(model, prompt="a red fox in snow <lora:ink:0.9> <lora:paper:0.7>"))
    after = addon_engine.generate(_req(model))
    assert np.abs(_px(plain) - _px(with_lora)).mean() > 2
    assert np.abs(_px(with_lora) - _px(two)).mean() > 2
    assert np.array_equal(_px(plain), _px(after))  # no LoRA in the prompt: no LoRA in the image
    hashes = dict(two.params)["Lora hashes"]
    assert hashes.startswith("ink: ") and ", paper: " in hashes and len(hashes.split(": ")[1].split(",")[0]) == 12
    assert not two.notices


def test_lora_problems_are_notices_not_silence(addon_engine, tiny_models):
    r = addon_engine.generate(_req(tiny_models.get(), prompt="fox <lora:missing:1> <lora:xlstyle:0.5>"))
    text = " ".join(r.notices)
    assert "No LoRA named “missing”" in text
    assert "is for SDXL but the model is SD 1.x" in text
    assert "Lora hashes" not in dict(r.params)


def test_embedding_by_name_and_vae_override_change_the_image(addon_engine, tiny_models, addon_folder, tmp_path):
    model = tiny_models.get()
    plain = addon_engine.generate(_req(model))
    prompt = "a red fox in snow, fuzzyfox"
    # The same prompt on an engine whose library has no embedding of that name: "fuzzyfox" is only text
    # there (a loaded embedding stays in its own model's tokenizer: tests/engine/test_tokenizer_leak.py).
    as_text = _engine_with_folder(tmp_path / "no embeddings").generate(_req(model, prompt=prompt))
    emb = addon_engine.generate(_req(model, prompt=prompt))
    assert not emb.notices
    assert np.abs(_px(emb) - _px(as_text)).mean() > 1  # the embedding's vectors, not the word, made this image
    assert np.array_equal(_px(emb), _px(addon_engine.generate(_req(model, prompt=prompt))))  # loaded once, same image
    vae = addon_engine.generate(_req(model, vae=str(addon_folder / "VAE" / "bright.safetensors")))
    params = dict(vae.params)
    assert params["VAE"] == "bright.safetensors" and len(params["VAE hash"]) == 10
    assert np.abs(_px(plain) - _px(vae)).mean() > 1
    back = addon_engine.generate(_req(model))
    assert np.array_equal(_px(plain), _px(back))  # the model's own VAE again


def test_regenerate_reproduces_lora_clip_skip_and_weighting(addon_engine, tiny_models, addon_folder, tmp_path):
    from engine.metadata import read_metadata
    from engine.outputs import save_image

    model = tiny_models.get()
    result = addon_engine.generate(_req(model, prompt="a (red:1.3) fox <lora:ink:0.6>", clip_skip=2))
    first = save_image(result, 0, tmp_path / "first.png")
    meta = read_metadata(first)
    assert meta.fields["clip_skip"] == 2
    assert "Clip skip: 2" in meta.raw["parameters"] and 'Lora hashes: "ink: ' in meta.raw["parameters"]
    again = tmp_path / "again.png"
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "regenerate", str(first), "--model", str(model), "--out", str(again),
         "--models-dir", str(addon_folder), "--data-dir", str(tmp_path / "data"), "--device", "cpu"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(first).convert("RGB")), np.asarray(Image.open(again).convert("RGB")))


def test_a1111_text_alone_restores_clip_skip():
    from engine.metadata import parse_a1111

    meta = parse_a1111("a fox <lora:ink:0.6>\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, "
                       'Clip skip: 2, Lora hashes: "ink: 0123456789ab"')
    assert meta.fields["clip_skip"] == 2
    assert meta.to_request().prompt == "a fox <lora:ink:0.6>"
    assert meta.extra["Lora hashes"] == "ink: 0123456789ab"

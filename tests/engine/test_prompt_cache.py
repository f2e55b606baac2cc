"""The runner's prompt cache (engine.core.prompt_cache): an unchanged prompt is not run through the
text encoders again (live painting re-renders one prompt over and over), a changed one is, and the
pixels are those of an uncached run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.api import GenerationRequest, Mode
from engine.core.prompt_cache import PromptCache


def _request(model, prompt="a red barn", negative="fog", **kw) -> GenerationRequest:
    base = dict(prompt=prompt, negative_prompt=negative, model=str(model), width=64, height=64, steps=2,
                guidance_scale=5.0, seed=3, sampler="Euler")
    return GenerationRequest(**{**base, **kw})


def _count_forward(module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_the_cache_keeps_only_the_last_key_and_never_a_failed_encode():
    cache = PromptCache()
    assert cache.get(("a",), lambda: 1) == 1 and cache.get(("a",), lambda: 2) == 1 and cache.encodes == 1
    assert cache.get(("b",), lambda: 3) == 3 and cache.get(("a",), lambda: 4) == 4 and cache.encodes == 3

    def boom():
        raise MemoryError

    with pytest.raises(MemoryError):
        cache.get(("c",), boom)
    assert cache.get(("a",), lambda: 5) == 5  # the failed encode left nothing behind (not even "a")
    assert cache.get(None, lambda: 6) == 6 and cache.get(None, lambda: 7) == 7  # None: never cached


def test_sd_encodes_an_unchanged_prompt_once_and_a_changed_one_again(tiny_models, shared_engine):
    model = tiny_models.get("sd15")
    engine = shared_engine
    engine.load(str(model))
    calls = _count_forward(engine.runner.base.text_encoder)
    canvas = Image.new("RGB", (64, 64), (90, 120, 200))
    first = engine.generate(_request(model, mode=Mode.IMG2IMG, init_image=canvas, strength=0.6))
    encoded_once = len(calls)
    assert encoded_once > 0
    # The canvas changes (a stroke), the prompt does not: the text encoder does not run again.
    canvas.paste((250, 30, 30), (10, 10, 40, 40))
    second = engine.generate(_request(model, mode=Mode.IMG2IMG, init_image=canvas, strength=0.6))
    assert len(calls) == encoded_once
    assert np.abs(np.asarray(first.images[0], int) - np.asarray(second.images[0], int)).mean() > 0.5
    # The same image as with a fresh encoding: drop the cache and run it again.
    engine.runner.prompt_cache.clear()
    fresh = engine.generate(_request(model, mode=Mode.IMG2IMG, init_image=canvas, strength=0.6))
    assert len(calls) == 2 * encoded_once
    assert np.array_equal(np.asarray(fresh.images[0]), np.asarray(second.images[0]))
    # A new prompt, a new negative and another clip skip are each encoded.
    for change in ({"prompt": "a blue barn"}, {"negative": "rain"}, {"clip_skip": 2}):
        before = len(calls)
        engine.generate(_request(model, **{"prompt": "a red barn", "negative": "fog", **change}))
        assert len(calls) > before, change


def test_flux_encode_hook_is_cached_too(tmp_path):
    """A family on PipelineRunner's encode hook (FLUX.1's T5 + CLIP) gets the cache without code of its own."""
    from engine.cli import main
    from engine.engine import Engine

    model = tmp_path / "flux1-schnell"
    assert main(["make-test-model", str(model), "--family", "flux1-schnell"]) == 0
    engine = Engine(device="cpu")
    engine.load(str(model))
    t5 = _count_forward(engine.runner.base.text_encoder_2)
    kw = dict(negative="", guidance_scale=0.0, steps=1)
    engine.generate(_request(model, **kw))
    engine.generate(_request(model, seed=4, **kw))
    assert len(t5) == 1
    engine.generate(_request(model, prompt="a fox", **kw))
    assert len(t5) == 2
    engine.unload()


@pytest.mark.slow
@pytest.mark.parametrize("family, kw", [
    ("zimage-turbo", dict(negative="", guidance_scale=0.0, steps=2)),
    ("sd35-medium", dict(negative="fog", guidance_scale=4.5, steps=2)),
    ("qwen-image", dict(negative="fog", guidance_scale=4.0, steps=2)),
])
def test_families_encoding_in_their_hook_encode_once_with_the_pipelines_own_pixels(tmp_path, family, kw):
    """Z-Image, SD 3.5 and Qwen-Image encode in their encode hook: kept by the cache, and the same image as the
    pipeline's own encoding of the text (PipelineRunner's default hook passes the text through)."""
    from engine.cli import main
    from engine.engine import Engine
    from engine.families.pipeline_runner import PipelineRunner

    model = tmp_path / family
    assert main(["make-test-model", str(model), "--family", family]) == 0
    engine = Engine(device="cpu")
    engine.load(str(model))
    calls = _count_forward(engine.runner.base.text_encoder)
    first = engine.generate(_request(model, **kw))
    encoded = len(calls)
    second = engine.generate(_request(model, seed=5, **kw))
    assert encoded > 0 and len(calls) == encoded
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))
    engine.runner.encode = lambda pipe, text, request: PipelineRunner.encode(engine.runner, pipe, text, request)
    engine.runner.prompt_cache.clear()
    own = engine.generate(_request(model, **kw))
    assert np.array_equal(np.asarray(own.images[0]), np.asarray(first.images[0]))
    engine.unload()

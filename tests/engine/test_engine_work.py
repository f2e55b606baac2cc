"""The engine does no more model work than raw diffusers for the same job: as many denoiser calls and
VAE decodes, and no more text-encoder passes (fewer for a batch: one encoding serves every image).

Counting forward passes is exact where timing on a shared machine is not; an extra pass of a large
text encoder is seconds on a CPU (this caught the empty prompt being encoded on every job)."""

from __future__ import annotations

import contextlib

import pytest


@contextlib.contextmanager
def counting(pipe):
    """Counts of text-encoder passes, denoiser calls and VAE decodes run through ``pipe``'s modules."""
    counts = {"text": 0, "denoiser": 0, "decode": 0}
    handles = []
    for name in ("text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            handles.append(module.register_forward_pre_hook(lambda *_: counts.__setitem__("text", counts["text"] + 1)))
    handles.append(pipe.unet.register_forward_pre_hook(lambda *_: counts.__setitem__("denoiser", counts["denoiser"] + 1)))
    decoder = pipe.vae.decoder
    handles.append(decoder.register_forward_pre_hook(lambda *_: counts.__setitem__("decode", counts["decode"] + 1)))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("steps,batch", [(1, 1), (2, 2)])
def test_engine_runs_no_more_passes_than_raw_diffusers(tiny_models, family, steps, batch):
    import torch
    from diffusers import DiffusionPipeline, EulerAncestralDiscreteScheduler

    from engine.api import GenerationRequest
    from engine.engine import Engine

    model = tiny_models.get(family)
    engine = Engine(device="cpu")
    request = GenerationRequest(prompt="a lighthouse on a cliff", negative_prompt="blurry", model=str(model), seed=7,
                                steps=steps, width=64, height=64, sampler="Euler a", guidance_scale=7.0,
                                batch_count=batch)
    engine.generate(request.replace(prompt="warm up"))  # loads the model
    with counting(engine.runner.active) as ours:
        engine.generate(request, on_progress=lambda p: None)

    raw = DiffusionPipeline.from_pretrained(model, local_files_only=True, torch_dtype=torch.float32)
    raw.scheduler = EulerAncestralDiscreteScheduler.from_config(raw.scheduler.config, timestep_spacing="linspace")
    raw.set_progress_bar_config(disable=True)
    with counting(raw) as theirs, torch.inference_mode():
        for i in range(batch):
            raw(prompt=request.prompt, negative_prompt=request.negative_prompt, num_inference_steps=steps,
                guidance_scale=7.0, width=64, height=64, generator=torch.Generator("cpu").manual_seed(7 + i))

    assert ours["denoiser"] == theirs["denoiser"] == steps * batch
    assert ours["decode"] == theirs["decode"] == batch
    encoders = 2 if family == "sdxl" else 1
    assert theirs["text"] == 2 * encoders * batch  # prompt and negative, every image
    assert ours["text"] == 2 * encoders  # prompt and negative, once for the whole batch

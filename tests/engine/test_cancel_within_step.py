"""A cancel that arrives in the middle of a denoising step stops that step at its next layer: a
huge step on a CPU can take minutes, and the user must not wait for it to finish."""

from __future__ import annotations

import threading

import pytest

from engine.api import Cancelled, GenerationRequest


def test_a_cancel_mid_step_stops_before_the_rest_of_the_unet_runs(tiny_models):
    from engine.engine import Engine

    model = tiny_models.get()
    engine = Engine(device="cpu")
    engine.load(str(model))
    unet = engine.runner.base.unet
    cancel = threading.Event()
    up_calls = []
    # The cancel arrives while the first down block runs (as if Esc were pressed then).
    first = unet.down_blocks[0].register_forward_hook(lambda *_: cancel.set())
    later = unet.up_blocks[0].register_forward_pre_hook(lambda *_: up_calls.append(1))
    try:
        with pytest.raises(Cancelled) as caught:
            engine.generate(GenerationRequest(prompt="x", model=str(model), steps=3, width=64, height=64, seed=1),
                            cancel=cancel)
    finally:
        first.remove()
        later.remove()
    assert up_calls == []  # the step stopped inside the UNet, before its up blocks
    assert "at step 0 of 3" in str(caught.value)
    # The engine stays ready, and no hook is left behind.
    assert not any(m._forward_pre_hooks for m in unet.modules() if m is not unet.up_blocks[0])
    assert engine.generate(GenerationRequest(prompt="x", model=str(model), steps=2, width=64, height=64, seed=1)).images

"""Results to save into a library without running a model (for library, crash and UI tests)."""

from __future__ import annotations

import random

from PIL import Image

from engine.api import GenerationRequest, ModelInfo, Result, RuntimeSettings, Timings


def make_result(prompt: str = "a castle on a hill", seed: int = 1, n: int = 1, size: int = 64, *,
                negative: str = "blurry", noise: bool = False, model: str = "dreamshaper_8") -> Result:
    """A Result as the engine returns it. ``noise=True`` gives incompressible pixels (big PNGs)."""
    request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=seed, width=size, height=size,
                                steps=4, batch_count=n, model=f"/models/{model}.safetensors")
    images = []
    for i in range(n):
        if noise:
            rng = random.Random(seed + i)
            images.append(Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3)))
        else:
            images.append(Image.new("RGB", (size, size), ((seed + i) * 67 % 256, (seed + i) * 131 % 256, 90)))
    return Result(
        images=tuple(images), seeds=tuple(seed + i for i in range(n)), request=request,
        model=ModelInfo(f"/models/{model}.safetensors", model, "checkpoint", "sd1", "safetensors"),
        model_hash="6ce0161689", settings=RuntimeSettings("cpu", "float32", "fast"), timings=Timings(total=1.0),
    )

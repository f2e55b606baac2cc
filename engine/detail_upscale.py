"""The request of a detail upscale ("Upscale with detail (any model)"): the image enlarged by ``scale``
(Lanczos or a GAN upscaler), then img2img over overlapping tiles with a generator and the image's own
prompt (engine.core.detail runs it). The CLI (`easel upscale --detail`) and the window build it here.
Pure request building: no torch here, any thread.
"""

from __future__ import annotations

import math

from engine.api import MAX_SIZE, PLAIN_UPSCALER, GenerationRequest, InvalidRequest, Mode, ModelInfo

DEFAULT_STRENGTH = 0.35
DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 128


def detail_request(image, model: str, info: ModelInfo, stored=None, *, scale: float = 2.0,
                   strength: float = DEFAULT_STRENGTH, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                   upscaler: str = PLAIN_UPSCALER, seed: int | None = None, prompt: str | None = None,
                   steps: int | None = None, memory_preset: str = "auto") -> GenerationRequest:
    """The tiled img2img request that enlarges ``image`` by ``scale`` with new detail from the generator
    ``model`` (``info``). ``stored``: the image's ImageMetadata (its prompt, negative prompt, steps, CFG and
    sampler are used when it has them). InvalidRequest (one line) for a scale the size limit refuses."""
    from engine import families

    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1.0 <= scale <= 8.0:
        raise InvalidRequest("scale", f"must be from 1 to 8 (got {scale!r})")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
        raise InvalidRequest("strength", f"must be above 0 and at most 1 (got {strength!r})")
    width, height = _grid(image.width * scale), _grid(image.height * scale)
    if max(width, height) > MAX_SIZE:
        raise InvalidRequest("scale", f"{image.width}x{image.height} times {scale:g} is {width}x{height}, larger "
                             f"than {MAX_SIZE} px: use a smaller scale")
    defaults = families.defaults(info)
    caps = families.capabilities(info)
    fields = dict(stored.fields) if stored is not None and stored.found else {}
    run_steps = int(steps or fields.get("steps") or defaults["steps"])
    run_steps = min(max(run_steps, math.ceil(1.0 / strength - 1e-9)), 150)  # at least one denoising step
    sampler = fields.get("sampler", defaults["sampler"])
    if caps is not None and caps.samplers and sampler not in caps.samplers:
        sampler = defaults["sampler"]
    return GenerationRequest(
        prompt=prompt if prompt is not None else fields.get("prompt", ""),
        negative_prompt=fields.get("negative_prompt", "") if prompt is None else "",
        model=model, mode=Mode.IMG2IMG, seed=seed, steps=run_steps,
        guidance_scale=defaults["guidance_scale"] if getattr(info, "variant", "") == "turbo"
        else fields.get("guidance_scale", defaults["guidance_scale"]),
        sampler=sampler, width=width, height=height, strength=strength, init_image=image.convert("RGB"),
        upscaler=upscaler or PLAIN_UPSCALER, tile=tile, tile_overlap=min(overlap, tile // 2),
        memory_preset=memory_preset,
    )


def _grid(v: float) -> int:
    return max(64, int(round(v / 8)) * 8)

"""Variations of an image for any checkpoint: img2img from the image itself with new seeds.

"Vary (subtle)" keeps composition and colours (strength 0.35); "Vary (strong)" keeps the layout
but redraws (0.7), as Midjourney's and DALL·E 2's buttons do. The prompt, negative prompt, sampler,
steps and guidance come from the image's stored request when it has one, so a variation of a
generated image stays on its recipe.

A Stable unCLIP model (family "unclip") makes DALL·E 2-style variations instead: the same request
(Mode.IMG2IMG with the image as ``init_image``) runs through its CLIP image embedding, the strength
setting the embedding's noise level (engine.families.unclip), all steps run (no img2img shortening),
and an image larger than the model's native 768x768 area is varied at that area with its aspect ratio.
Pure request building: no torch here, any thread.
"""

from __future__ import annotations

import math

from engine.api import MAX_SEED, GenerationRequest, InvalidRequest, Mode, ModelInfo, random_seed

STRENGTHS = {"subtle": 0.35, "strong": 0.7}


def parse_strength(text: str | float) -> float:
    """"subtle" | "strong" | a number in (0, 1]; InvalidRequest otherwise."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        key = text.strip().lower()
        if key in STRENGTHS:
            return STRENGTHS[key]
        try:
            value = float(key)
        except ValueError:
            raise InvalidRequest("strength", f"use subtle, strong or a number from 0 to 1 (got {text!r})") from None
    if not 0.0 < value <= 1.0:
        raise InvalidRequest("strength", f"must be above 0 and at most 1 (got {value})")
    return value


def variation_request(image, model: str, info: ModelInfo, stored=None, *, count: int = 4, strength: float = 0.35,
                      seed: int | None = None, prompt: str | None = None, steps: int | None = None) -> GenerationRequest:
    """One img2img request making ``count`` variations of ``image`` (seeds seed, seed+1, ...).

    ``stored``: the image's ImageMetadata (engine.metadata.read_metadata) or None. ``seed`` None
    picks a fresh random seed, never the image's own (that would redraw the same noise).
    """
    from engine import families

    defaults = families.defaults(info)
    fields = dict(stored.fields) if stored is not None and stored.found else {}
    caps = families.capabilities(info)
    unclip = caps is not None and caps.role == "variations"  # the image's embedding drives it: steps as they are
    run_steps = steps or fields.get("steps") or defaults["steps"]
    if not unclip:  # img2img runs steps * strength denoising steps: keep at least one (one-step models)
        run_steps = max(int(run_steps), math.ceil(1.0 / strength))
    if seed is None:
        seed = random_seed()
        if seed == fields.get("seed"):
            seed = (seed + 1) % (MAX_SEED + 1)
    width, height = _size(image.width), _size(image.height)
    if unclip and width * height > defaults["width"] * defaults["height"]:
        width, height = _fit_area(image.width, image.height, defaults["width"] * defaults["height"])
    return GenerationRequest(
        prompt=prompt if prompt is not None else fields.get("prompt", ""),
        negative_prompt=fields.get("negative_prompt", "") if prompt is None else "",
        model=model,
        mode=Mode.IMG2IMG,
        seed=seed,
        steps=min(run_steps, 150),
        guidance_scale=fields.get("guidance_scale", defaults["guidance_scale"]) if not info_is_turbo(info)
        else defaults["guidance_scale"],
        sampler=fields.get("sampler", defaults["sampler"]),
        width=width,
        height=height,
        batch_count=count,
        strength=strength,
        init_image=image.convert("RGB"),
    )


def info_is_turbo(info: ModelInfo) -> bool:
    return getattr(info, "variant", "") == "turbo"


def _fit_area(w: int, h: int, area: int) -> tuple[int, int]:
    """``w``x``h`` scaled down to about ``area`` pixels, each side a multiple of 8."""
    scale = math.sqrt(area / (w * h))
    return _size(int(w * scale)), _size(int(h * scale))


def _size(v: int) -> int:
    return max(64, min(4096, (v + 4) // 8 * 8))

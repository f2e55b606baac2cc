"""The request that upscales an image with the SD x4 upscaler. No torch: any thread."""

from __future__ import annotations

from engine.api import MAX_SIZE, MIN_SIZE, GenerationRequest, InvalidRequest, ModelInfo, Mode, random_seed

X4_STEPS, X4_GUIDANCE = 20, 9.0  # the x4 pipeline's own guidance default; 20 steps keep tiles quick
SCALE = 4


def upscale_request(image, model_path: str, info: ModelInfo, stored=None, seed: int | None = None) -> GenerationRequest:
    """Mode.IMG2IMG with the source as init image and 4x its size as width/height; the source's
    stored prompt (``stored``: its ImageMetadata, if any) guides the upscaler."""
    w, h = image.size
    width, height = _side(SCALE * w), _side(SCALE * h)
    if max(width, height) > MAX_SIZE:
        raise InvalidRequest("init_image", f"the image is {w}x{h}: 4x would be {4 * w}x{4 * h}, over the "
                             f"{MAX_SIZE} px limit; use a GAN upscaler, or crop the image first")
    if min(width, height) < MIN_SIZE or min(w, h) < 16:
        raise InvalidRequest("init_image", f"the image is {w}x{h}: too small for the x4 upscaler (16 px at least)")
    fields = dict(stored.fields) if stored is not None and getattr(stored, "found", False) else {}
    return GenerationRequest(
        prompt=fields.get("prompt", ""), negative_prompt=fields.get("negative_prompt", ""), model=model_path,
        mode=Mode.IMG2IMG, seed=random_seed() if seed is None else seed, steps=X4_STEPS,
        guidance_scale=X4_GUIDANCE, width=width, height=height, strength=1.0, batch_count=1,
        init_image=image.convert("RGB"),
    )


def _side(v: int) -> int:
    return -(-v // 8) * 8

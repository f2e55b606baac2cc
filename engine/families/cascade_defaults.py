"""Defaults and requests for the DeepFloyd IF cascade and the SD x4 upscaler. No torch: any thread."""

from __future__ import annotations

from engine.api import MAX_SIZE, MIN_SIZE, GenerationRequest, InvalidRequest, ModelError, ModelInfo, Mode, random_seed

X4_STEPS, X4_GUIDANCE = 20, 9.0  # the x4 pipeline's own guidance default; 20 steps keep tiles quick


def cascade_defaults(info: ModelInfo) -> dict:
    """IF: 1024 px when an x4 folder completes the cascade, else 256 (stage II's size); 50 stage I steps
    (stage II and the x4 stage run half as many), guidance 7. The x4 upscaler: 20 steps, guidance 9."""
    if info.family == "sd-x4-upscaler":
        return {"width": 512, "height": 512, "steps": X4_STEPS, "guidance_scale": X4_GUIDANCE, "sampler": "Euler a"}
    from engine.families.cascade_files import find_cascade

    try:
        side = 1024 if find_cascade(info.path).upscaler is not None else 256
    except ModelError:
        side = 256
    return {"width": side, "height": side, "steps": 50, "guidance_scale": 7.0, "sampler": "Euler a"}


def cascade_parameters(info: ModelInfo) -> tuple[str, ...]:
    """IF takes no sampler (its DDPM schedulers are part of the model) and no strength (text only); the
    x4 upscaler's size comes from its source image."""
    if info.family == "sd-x4-upscaler":
        return ("negative_prompt", "steps", "guidance_scale")
    return ("negative_prompt", "steps", "guidance_scale", "width", "height")


def upscale_request(image, model_path: str, info: ModelInfo, stored=None, seed: int | None = None) -> GenerationRequest:
    """Contract 3: Mode.IMG2IMG with the source as init image and 4x its size as width/height; the
    source's stored prompt (if any) guides the upscaler."""
    w, h = image.size
    width, height = _side(4 * w), _side(4 * h)
    if max(width, height) > MAX_SIZE:
        raise InvalidRequest("init_image", f"the image is {w}x{h}: 4x would be {4 * w}x{4 * h}, over the "
                             f"{MAX_SIZE} px limit; use a GAN upscaler, or crop the image first")
    if min(width, height) < MIN_SIZE or min(w, h) < 16:
        raise InvalidRequest("init_image", f"the image is {w}x{h}: too small for the x4 upscaler (16 px at least)")
    fields = dict(stored.fields) if stored is not None and getattr(stored, "found", False) else {}
    defaults = cascade_defaults(info)
    return GenerationRequest(
        prompt=fields.get("prompt", ""), negative_prompt=fields.get("negative_prompt", ""), model=model_path,
        mode=Mode.IMG2IMG, seed=random_seed() if seed is None else seed, steps=defaults["steps"],
        guidance_scale=defaults["guidance_scale"], width=width, height=height, strength=1.0, batch_count=1,
        init_image=image.convert("RGB"),
    )


def _side(v: int) -> int:
    return -(-v // 8) * 8

"""Writing: the A1111 ``parameters`` text, our exact ``easel`` JSON chunk, and EXIF for JPEG/WebP.

``png_info`` puts two text chunks in a PNG. ``parameters`` is the A1111 text that other tools
(A1111, Forge, SD.Next, Civitai, image browsers) understand; ``easel`` is an iTXt chunk holding
JSON with the exact request, so Easel regenerates exactly this image from it.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.api import GenerationRequest, Mode, Result
from engine.metadata.containers import EXIF_IFD, USER_COMMENT
from engine.metadata.fields import EASEL_KEY, FORMAT_VERSION, PARAMETERS_KEY, format_number


def _karras_split(sampler: str) -> tuple[str, str]:
    """Our sampler name as A1111 >= 1.9 writes it: (Sampler, Schedule type)."""
    if sampler.endswith(" Karras"):
        return sampler[: -len(" Karras")], "Karras"
    # A1111 >= 1.9 resolves "Automatic" to Karras for DPM++ 2M; our plain DPM++ 2M is the
    # model's own (uniform) schedule, which A1111 calls "Uniform".
    if sampler == "DPM++ 2M":
        return sampler, "Uniform"
    return sampler, "Automatic"


def _quote(value: Any) -> str:
    text = format_number(value) if isinstance(value, (int, float)) else str(value)
    if "," in text or ":" in text or "\n" in text or "\r" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def a1111_parameters(
    request: GenerationRequest,
    seed: int,
    *,
    model_name: str,
    model_hash: str,
    extra: dict[str, str] | None = None,
    sampler: bool = True,
) -> str:
    """The A1111 ``parameters`` text for one image of ``request`` made with ``seed``.

    Prompt (may span lines), then ``Negative prompt: ...`` (left out when empty), then one line of
    ``key: value`` pairs; a value holding ``,`` ``:`` or a newline is JSON-quoted as A1111 does.
    ``extra`` pairs (e.g. "Lora hashes", "Clip skip") come last, in the order given. ``sampler``
    False leaves Sampler and Schedule type out (a model with its own schedule, such as aMUSEd or
    DeepFloyd IF, uses none).
    """
    name, schedule = _karras_split(request.sampler) if sampler else ("", "")
    pairs: list[tuple[str, Any]] = [
        ("Steps", request.steps),
        ("Sampler", name),
        ("Schedule type", schedule),
        ("CFG scale", request.guidance_scale),
        ("Seed", seed),
        ("Size", f"{request.width}x{request.height}"),
        ("Model hash", model_hash),
        ("Model", model_name),
    ]
    if request.mode in (Mode.IMG2IMG, Mode.INPAINT):
        pairs.append(("Denoising strength", request.strength))
    if getattr(request, "hires", False):  # A1111's words and order; Size stays the first pass's
        pairs += [("Denoising strength", request.hires_strength), ("Hires upscale", request.hires_scale),
                  ("Hires steps", request.hires_steps or None), ("Hires upscaler", request.upscaler)]
    if getattr(request, "tile", 0) and request.mode is Mode.IMG2IMG:
        pairs += [("Detail upscaler", request.upscaler), ("Detail tile", request.tile),
                  ("Detail tile overlap", request.tile_overlap)]
    if request.mode is Mode.INPAINT:
        pairs.append(("Mask blur", request.mask_blur))
        if request.only_masked:
            pairs += [("Inpaint area", "Only masked"), ("Masked area padding", request.mask_padding)]
    for key, value in (extra or {}).items():
        if not key or any(c in key for c in ":,\n\r"):
            raise ValueError(f"metadata key {key!r} may not be empty or hold ':' ',' or a newline")
        pairs.append((key, value))
    line = ", ".join(f"{k}: {_quote(v)}" for k, v in pairs if v is not None and v != "")
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    lines.append(line)
    return "\n".join(lines)


def png_info(
    result: Result,
    index: int,
    *,
    app_version: str,
    embed: bool = True,
    extra: dict[str, str] | None = None,
) -> PngInfo:
    """Text chunks for image ``index`` of ``result``: A1111 ``parameters``, our ``easel`` JSON and,
    for an inpaint result, its mask (``easel-mask``, zTXt).

    The recorded request carries this image's seed and ``batch_count=1``, so it regenerates exactly
    this image. ``embed=False`` (the user turned metadata off) gives an empty PngInfo: no prompt,
    seed or model. Pass it as ``image.save(path, pnginfo=...)``.
    """
    info = PngInfo()
    if not embed:
        return info
    seed = result.seeds[index]
    # What the engine recorded (Lora hashes, Clip skip, VAE) first, then the caller's pairs.
    pairs = dict(getattr(result, "params", ()) or ())
    pairs.update(extra or {})
    pairs.setdefault("Version", f"easel {app_version}")
    uses_sampler = getattr(result, "uses_sampler", True)
    text = a1111_parameters(result.request, seed, model_name=result.model.name, model_hash=result.model_hash,
                            extra=pairs, sampler=uses_sampler)
    info.add_text(PARAMETERS_KEY, text)  # tEXt when Latin-1, else iTXt (Pillow decides)
    # Patched as a dict rather than request.replace(): no re-validation, so a Result whose request
    # dropped its init image still saves.
    # The model is recorded by file name and hash, never its full path: images get shared, and a
    # path shows the user's folders (often their user name). Restoring finds the model by hash/name.
    model_file = Path(result.model.path).name
    recipe_request = {**result.request.to_dict(), "seed": seed, "batch_count": 1, "model": model_file}
    if not uses_sampler:  # a model with its own schedule (FLUX, aMUSEd, IF): no sampler ran, none is recorded
        recipe_request.pop("sampler", None)
    if recipe_request.get("vae"):  # like the model: the file name, never the user's folders
        recipe_request["vae"] = Path(recipe_request["vae"]).name
    for control in recipe_request.get("controls", ()):  # each with its image, so the same pixels come back
        control["model"] = Path(control["model"]).name if control.get("model") else ""
    for ref in recipe_request.get("references", ()):  # so is each reference: its picture, adapter and encoder by name
        ref["model"] = Path(ref["model"]).name if ref.get("model") else ""
        ref["encoder"] = Path(ref["encoder"]).name if ref.get("encoder") else ""
    recipe = {
        "format": "easel",
        "version": FORMAT_VERSION,
        "app_version": app_version,
        "request": recipe_request,
        "model": {
            "name": result.model.name,
            "hash": result.model_hash,
            "file": model_file,
            "family": result.model.family,
        },
        "settings": result.settings.to_dict(),
        "timings": dataclasses.asdict(result.timings),
        "extra": {k: v for k, v in pairs.items() if k != "Version"},
        "created": datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds"),
    }
    info.add_itxt(EASEL_KEY, json.dumps(recipe, ensure_ascii=False))
    mask = result.request.mask
    if mask is not None and result.request.mode is Mode.INPAINT:
        # An inpaint result carries its mask (compressed), so the edit can be redone from the file
        # with only the source image (``easel regenerate``). Every writer goes through here.
        from engine.images import MASK_KEY, mask_to_text

        info.add_text(MASK_KEY, mask_to_text(mask), zip=True)
    return info


def exif_with_parameters(parameters: str) -> Image.Exif:
    """EXIF for JPEG/WebP holding ``parameters`` as A1111 writes it (UserComment, UTF-16 BE)."""
    exif = Image.Exif()
    exif[EXIF_IFD] = {USER_COMMENT: b"UNICODE\0" + parameters.encode("utf-16-be")}
    return exif

"""Reading A1111's ``parameters`` text (also Forge, SD.Next, Fooocus's A1111 scheme, Civitai)."""

from __future__ import annotations

import json
import re
from typing import Any

from engine.api import Mode
from engine.metadata.fields import PARAMETERS_KEY, ImageMetadata, finish_fields, map_sampler


STEPS_PAIR = re.compile(r"(?:^|,)\s*Steps:\s*[-+]?\d+")  # a negative count is still the parameters line (clamped, with a warning)
_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")
_HIRES_KEYS = ("Hires upscale", "Hires resize", "Hires steps", "Hires upscaler")
_DETAIL_KEYS = {"Hires upscale": "hires_scale", "Hires steps": "hires_steps", "Hires upscaler": "upscaler",
                "Detail upscaler": "upscaler", "Detail tile": "tile", "Detail tile overlap": "tile_overlap"}


def _split_pairs(line: str) -> list[tuple[str, str]]:
    """``key: value, key: "quoted, value"`` into pairs; a piece with no key joins the value before."""
    pairs: list[tuple[str, str]] = []
    decoder = json.JSONDecoder()
    pos, n = 0, len(line)
    while pos < n:
        while pos < n and line[pos] in " ,\t":
            pos += 1
        if pos >= n:
            break
        colon = line.find(":", pos)
        comma = line.find(",", pos)
        if colon < 0 or (0 <= comma < colon):
            end = n if comma < 0 else comma
            piece = line[pos:end].strip()
            if pairs and piece:
                key, value = pairs[-1]
                pairs[-1] = (key, f"{value}, {piece}")
            pos = end + 1
            continue
        key = line[pos:colon].strip()
        pos = colon + 1
        while pos < n and line[pos] == " ":
            pos += 1
        value = None
        if pos < n and line[pos] == '"':
            try:
                decoded, end = decoder.raw_decode(line, pos)
            except ValueError:
                decoded = None
            if isinstance(decoded, str):
                value, pos = decoded, end
                rest = line.find(",", pos)
                tail = line[pos: n if rest < 0 else rest].strip()
                if tail:  # junk after the closing quote: keep it, unquoted
                    value += tail
                pos = n if rest < 0 else rest + 1
        if value is None:
            end = line.find(",", pos)
            end = n if end < 0 else end
            value, pos = line[pos:end].strip(), end + 1
        pairs.append((key, value))
    return pairs


def parse_a1111(text: str, *, raw: dict[str, str] | None = None, source: str = "a1111") -> ImageMetadata:
    """Read A1111's ``parameters`` text (also Forge, SD.Next, Fooocus's A1111 scheme, Civitai)."""
    warnings: list[str] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    param_at = next((i for i in range(len(lines) - 1, -1, -1) if STEPS_PAIR.search(lines[i])), None)
    pairs: list[tuple[str, str]] = []
    if param_at is not None:
        pairs = _split_pairs(lines[param_at])
        for trailing in lines[param_at + 1:]:
            if trailing.strip():
                more = _split_pairs(trailing)
                pairs += more if more else [("Trailing text", trailing.strip())]
        lines = lines[:param_at]
    prompt_lines: list[str] = []
    negative_lines: list[str] | None = None
    for line in lines:
        if negative_lines is None and line.startswith("Negative prompt:"):
            rest = line[len("Negative prompt:"):]
            negative_lines = [rest[1:] if rest.startswith(" ") else rest]
        elif negative_lines is not None:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)
    found: dict[str, Any] = {"prompt": "\n".join(prompt_lines)}
    if negative_lines is not None:
        found["negative_prompt"] = "\n".join(negative_lines)
    elif param_at is not None:
        found["negative_prompt"] = ""

    values: dict[str, str] = {}
    for key, value in pairs:
        values.setdefault(key, value)
    extra: dict[str, str] = {}
    resize: list[int] = []
    model_name = model_hash = ""
    sampler = schedule = None
    for key, value in values.items():
        if key == "Steps":
            found["steps"] = value
        elif key == "Sampler":
            sampler = value
        elif key == "CFG scale":
            found["guidance_scale"] = value
        elif key == "Seed":
            found["seed"] = value
        elif key == "Size":
            size = _SIZE.match(value)
            if size:
                found["width"], found["height"] = int(size.group(1)), int(size.group(2))
            else:
                warnings.append(f'size "{value}" is not WIDTHxHEIGHT; ignored')
        elif key == "Model hash":
            model_hash = value
        elif key == "Model":
            model_name = value
        elif key == "Mask blur":
            found["mask_blur"] = value
        elif key == "Inpaint area":
            found["only_masked"] = value.strip().lower() == "only masked"
        elif key == "Masked area padding":
            found["mask_padding"] = value
        elif key == "Clip skip":
            found["clip_skip"] = value
            extra[key] = value
        elif key in _DETAIL_KEYS:  # the hires fix's and the detail upscale's (Easel's) settings, shown as written too
            found[_DETAIL_KEYS[key]] = value
            extra[key] = value
        elif key == "Hires resize":  # A1111's "resize to" instead of a factor
            size = _SIZE.match(value)
            if size:
                resize[:] = [int(size.group(1)), int(size.group(2))]
        elif key == "Speed":  # Easel's: "fast", "draft (Pyramid Attention Broadcast)"
            found["speed"] = value.split(" ", 1)[0]
            extra[key] = value
        else:
            if key == "Schedule type":
                schedule = value
            extra[key] = value
    if sampler is not None:
        found["sampler"], warning = map_sampler(sampler, schedule)
        if warning:
            warnings.append(warning)
    strength = values.get("Denoising strength")
    hires = any(k in values for k in _HIRES_KEYS)
    if any(k in values for k in ("Mask blur", "Inpaint area", "Masked area padding")):
        found["mode"] = Mode.INPAINT.value
    elif strength is not None and not hires:
        found["mode"] = Mode.IMG2IMG.value
    elif param_at is not None:
        found["mode"] = Mode.TXT2IMG.value
    if strength is not None and found.get("mode") in (Mode.IMG2IMG.value, Mode.INPAINT.value):
        found["strength"] = strength
        extra.pop("Denoising strength", None)
    if hires and found.get("mode") == Mode.TXT2IMG.value:
        if strength is not None:
            found["hires_strength"] = strength
        if "hires_scale" not in found and resize and found.get("width"):  # "Hires resize: 1024x1536"
            found["hires_scale"] = round(resize[0] / found["width"], 3) if resize[0] else round(resize[1] / found["height"], 3)
        found.setdefault("hires_scale", 2)  # A1111's default factor when only the steps or upscaler were written
    else:
        for key in ("hires_scale", "hires_steps"):
            found.pop(key, None)
    if source == "a1111" and values.get("Version", "").lower().startswith("fooocus"):
        source = "fooocus"
    return finish_fields(source, found, warnings, raw=raw if raw is not None else {PARAMETERS_KEY: text},
                   model_name=model_name, model_hash=model_hash, extra=extra)

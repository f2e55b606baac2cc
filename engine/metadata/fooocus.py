"""Reading Fooocus's JSON scheme (PNG ``parameters`` or JPEG/WebP EXIF UserComment)."""

from __future__ import annotations

import re
from typing import Any

from engine.api import Mode
from engine.metadata.fields import ImageMetadata, finish_fields, label_value, model_stem, text_value, map_sampler


def parse_fooocus_json(data: dict[str, Any], raw: dict[str, str], warnings: list[str]) -> ImageMetadata:
    def get(key: str, label: str) -> Any:
        return data.get(key, data.get(label))

    found: dict[str, Any] = {
        "prompt": get("prompt", "Prompt"),
        "negative_prompt": get("negative_prompt", "Negative Prompt"),
        "steps": get("steps", "Steps"),
        "guidance_scale": get("guidance_scale", "Guidance Scale"),
        "seed": get("seed", "Seed"),
        "mode": Mode.TXT2IMG.value,
    }
    resolution = get("resolution", "Resolution")
    size = re.findall(r"\d+", str(resolution)) if resolution is not None else []
    if len(size) >= 2:
        found["width"], found["height"] = int(size[0]), int(size[1])
    sampler, scheduler = get("sampler", "Sampler"), get("scheduler", "Scheduler")
    if isinstance(sampler, str) and sampler:
        found["sampler"], warning = map_sampler(sampler, scheduler if isinstance(scheduler, str) else None)
        if warning:
            warnings.append(warning)
    used = {"prompt", "Prompt", "negative_prompt", "Negative Prompt", "steps", "Steps", "guidance_scale",
            "Guidance Scale", "seed", "Seed", "resolution", "Resolution", "sampler", "Sampler",
            "base_model", "Base Model", "base_model_hash"}
    extra = {label_value(k): text_value(v) for k, v in data.items() if k not in used and v not in (None, "", [], "None")}
    return finish_fields("fooocus", found, warnings, raw=raw, model_name=model_stem(text_value(get("base_model", "Base Model") or "")),
                   model_hash=text_value(data.get("base_model_hash") or ""), extra=extra)

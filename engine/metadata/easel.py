"""Reading Easel's own ``easel`` chunk: the exact request as JSON (see ``write.png_info``)."""

from __future__ import annotations

import dataclasses

from engine.api import GenerationRequest
from engine.metadata.fields import EASEL_KEY, FORMAT_VERSION, ImageMetadata, finish_fields, json_object, text_value


def parse_easel(text: str, raw: dict[str, str]) -> ImageMetadata | None:
    warnings: list[str] = []
    data = json_object(text, EASEL_KEY, warnings)
    if data is None or data.get("format") != "easel" or not isinstance(data.get("request"), dict):
        return None
    version = data.get("version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        warnings.append("written by a newer Easel; reading the settings this version knows")
    names = {f.name for f in dataclasses.fields(GenerationRequest)} - {"init_image", "mask"}
    found = {k: v for k, v in data["request"].items() if k in names}
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    extra: dict[str, str] = {}
    if data.get("app_version"):
        extra["Version"] = f"easel {data['app_version']}"
    for key, label in (("file", "Model file"), ("family", "Model family")):
        if model.get(key):
            extra[label] = text_value(model[key])
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    for key, label in (("device", "Device"), ("dtype", "Dtype"), ("preset", "Memory preset")):
        if settings.get(key):
            extra[label] = text_value(settings[key])
    timings = data.get("timings") if isinstance(data.get("timings"), dict) else {}
    if isinstance(timings.get("total"), (int, float)):
        extra["Time taken"] = f"{timings['total']:.1f} s"
    if data.get("created"):
        extra["Created"] = text_value(data["created"])
    if isinstance(data.get("extra"), dict):
        extra.update({str(k): text_value(v) for k, v in data["extra"].items()})
    return finish_fields("easel", found, warnings, raw=raw, model_name=text_value(model.get("name") or ""),
                   model_hash=text_value(model.get("hash") or ""), extra=extra)

"""Reading ComfyUI's ``prompt`` chunk: the executed graph, traced back from its KSampler node.

Not read: ComfyUI's ``workflow`` chunk alone (the editor graph).
"""

from __future__ import annotations

from typing import Any

from engine.api import Mode
from engine.metadata.fields import ImageMetadata, finish_fields, format_number, json_object, model_stem, map_sampler


_TEXT_KEYS = ("text", "text_g", "string", "value", "prompt", "Text", "STRING", "text_positive")
_NUMBER_KEYS = ("seed", "noise_seed", "value", "int", "float", "number", "Value")


def _link(value: Any) -> str | None:
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int)):
        return str(value[0])
    return None


class _Graph:
    def __init__(self, nodes: dict[str, Any]):
        self.nodes = nodes

    def cls(self, nid: str | None) -> str:
        node = self.nodes.get(nid) if nid is not None else None
        return str(node.get("class_type", "")) if isinstance(node, dict) else ""

    def inputs(self, nid: str | None) -> dict[str, Any]:
        node = self.nodes.get(nid) if nid is not None else None
        inputs = node.get("inputs") if isinstance(node, dict) else None
        return inputs if isinstance(inputs, dict) else {}

    def value(self, value: Any, kinds: tuple[type, ...], keys: tuple[str, ...]) -> Any:
        """A widget value, following one link to a primitive/constant node."""
        nid = _link(value)
        if nid is None:
            return value if isinstance(value, kinds) and not isinstance(value, bool) else None
        inputs = self.inputs(nid)
        for key in keys:
            if isinstance(inputs.get(key), kinds) and not isinstance(inputs.get(key), bool):
                return inputs[key]
        for candidate in inputs.values():
            if isinstance(candidate, kinds) and not isinstance(candidate, bool):
                return candidate
        return None

    def number(self, value: Any) -> Any:
        return self.value(value, (int, float), _NUMBER_KEYS)

    def text(self, value: Any, role: str, depth: int = 0) -> str | None:
        """The prompt text behind a conditioning link, through pass-through conditioning nodes."""
        nid = _link(value)
        if nid is None or depth > 16:
            return None
        if self.cls(nid) == "ConditioningZeroOut":
            return ""
        inputs = self.inputs(nid)
        for key in ("text", "text_g", "prompt"):
            if key in inputs:
                text = self.value(inputs[key], (str,), _TEXT_KEYS)
                if isinstance(text, str):
                    return text
        for key in (role, "conditioning", "conditioning_1", "conditioning_to", "base_" + role):
            if _link(inputs.get(key)) is not None:
                return self.text(inputs[key], role, depth + 1)
        return None

    def latent_origin(self, value: Any, depth: int = 0) -> tuple[str, str | None]:
        nid = _link(value)
        if nid is None or depth > 16:
            return "unknown", None
        cls, inputs = self.cls(nid), self.inputs(nid)
        low = cls.lower()
        if "empty" in low and "latent" in low:
            return "empty", nid
        if _is_ksampler(cls):
            return "sampler", nid
        if "inpaint" in low or cls == "SetLatentNoiseMask":
            return "inpaint", nid
        if cls.startswith("VAEEncode"):
            return "img2img", nid
        for key in ("samples", "latent", "latent_image", "samples1", "source"):
            if _link(inputs.get(key)) is not None:
                return self.latent_origin(inputs[key], depth + 1)
        return "unknown", nid

    def model(self, value: Any, loras: list[str], depth: int = 0) -> str:
        nid = _link(value)
        if nid is None or depth > 16:
            return ""
        inputs = self.inputs(nid)
        for key in ("ckpt_name", "unet_name", "model_name"):
            if isinstance(inputs.get(key), str):
                return inputs[key]
        if isinstance(inputs.get("lora_name"), str):
            strength = self.number(inputs.get("strength_model", 1.0))
            loras.append(f"{model_stem(inputs['lora_name'])}: {format_number(strength if strength is not None else 1.0)}")
        return self.model(inputs.get("model"), loras, depth + 1)


def _is_ksampler(cls: str) -> bool:
    return "KSampler" in cls


def parse_comfyui(text: str, raw: dict[str, str], warnings: list[str]) -> ImageMetadata | None:
    data = json_object(text, "prompt", warnings)
    if data is None:
        return None
    graph = _Graph(data)
    samplers = [nid for nid in data if _is_ksampler(graph.cls(nid))]
    if not samplers:
        if any(isinstance(n, dict) and "class_type" in n for n in data.values()):
            warnings.append("the ComfyUI graph has no KSampler node; its settings were not read")
            return finish_fields("comfyui", {}, warnings, raw=raw)
        return None

    def rank(nid: str) -> tuple[int, int, Any]:
        inputs = graph.inputs(nid)
        origin, _ = graph.latent_origin(inputs.get("latent_image"))
        start = graph.number(inputs.get("start_at_step", 0)) or 0
        noise = inputs.get("add_noise", "enable") != "disable"
        return (origin == "sampler", (start > 0) or not noise, _node_order(nid))

    nid = min(samplers, key=rank)
    inputs = graph.inputs(nid)
    found: dict[str, Any] = {}
    extra: dict[str, str] = {}
    found["prompt"] = graph.text(inputs.get("positive"), "positive")
    negative = graph.text(inputs.get("negative"), "negative")
    found["negative_prompt"] = negative if negative is not None else ""
    if found["prompt"] is None:
        warnings.append("the positive prompt could not be traced in the ComfyUI graph")
    if negative is None and _link(inputs.get("negative")) is not None:
        warnings.append("the negative prompt could not be traced in the ComfyUI graph")
    found["seed"] = graph.number(inputs.get("seed", inputs.get("noise_seed")))
    found["steps"] = graph.number(inputs.get("steps"))
    found["guidance_scale"] = graph.number(inputs.get("cfg"))
    sampler = graph.value(inputs.get("sampler_name"), (str,), ("sampler_name", "value"))
    scheduler = graph.value(inputs.get("scheduler"), (str,), ("scheduler", "value"))
    if isinstance(sampler, str):
        found["sampler"], warning = map_sampler(sampler, scheduler if isinstance(scheduler, str) else "normal")
        if warning:
            warnings.append(warning)
        extra["Sampler"] = sampler
    if isinstance(scheduler, str):
        extra["Scheduler"] = scheduler
    origin, origin_id = graph.latent_origin(inputs.get("latent_image"))
    if origin == "empty":
        latent = graph.inputs(origin_id)
        found["width"] = graph.number(latent.get("width"))
        found["height"] = graph.number(latent.get("height"))
        batch = graph.number(latent.get("batch_size", 1))
        if batch is not None:
            found["batch_count"] = batch
    mode = {"img2img": Mode.IMG2IMG, "inpaint": Mode.INPAINT}.get(origin, Mode.TXT2IMG)
    found["mode"] = mode.value
    denoise = graph.number(inputs.get("denoise", 1.0))
    start = graph.number(inputs.get("start_at_step"))
    if start and isinstance(found["steps"], (int, float)) and found["steps"] > 0:
        denoise = max(0.0, 1.0 - start / found["steps"])
    if mode is not Mode.TXT2IMG:
        found["strength"] = denoise
    elif denoise is not None and denoise != 1.0:
        extra["Denoise"] = format_number(denoise)
    loras: list[str] = []
    checkpoint = graph.model(inputs.get("model"), loras)
    if checkpoint:
        extra["Checkpoint"] = checkpoint
    if loras:
        extra["LoRAs"] = ", ".join(reversed(loras))
    if len(samplers) > 1:
        extra["Sampler nodes"] = str(len(samplers))
    return finish_fields("comfyui", found, warnings, raw=raw, model_name=model_stem(checkpoint), extra=extra)


def _node_order(nid: str) -> tuple[int, float, str]:
    try:
        return (0, float(nid), nid)
    except ValueError:
        return (1, 0.0, nid)

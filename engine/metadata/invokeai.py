"""Reading InvokeAI (3.x+ ``invokeai_metadata`` JSON, 2.x ``sd-metadata`` and ``Dream``) and NMKD.

NMKD Stable Diffusion GUI writes the InvokeAI 2.x ``Dream`` command line (optionally with
``sd-metadata``): prompt with the negative in ``[brackets]``, ``-s`` steps, ``-S`` seed, ``-W``/``-H``
size, ``-C`` CFG scale, ``-A`` sampler, ``-f`` strength. Those files cannot be told apart from
InvokeAI 2.x ones unless a chunk names NMKD, so they are reported as "invokeai" unless one does.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from engine.api import Mode
from engine.metadata.fields import ImageMetadata, finish_fields, format_number, json_object, label_value, text_value, to_float, map_sampler


def _split_invoke_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 2.x / NMKD put the negative prompt in [brackets] inside the prompt."""
    negatives = re.findall(r"\[([^\[\]]*)\]", prompt)
    if not negatives:
        return prompt, ""
    positive = re.sub(r"\s*\[[^\[\]]*\]\s*", " ", prompt).strip()
    return positive, ", ".join(n.strip() for n in negatives if n.strip())


def parse_invokeai(text: str, raw: dict[str, str], warnings: list[str]) -> ImageMetadata | None:
    data = json_object(text, "invokeai_metadata", warnings)
    if data is None:
        return None
    found: dict[str, Any] = {
        "prompt": data.get("positive_prompt"),
        "negative_prompt": data.get("negative_prompt", ""),
        "seed": data.get("seed"),
        "steps": data.get("steps"),
        "guidance_scale": data.get("cfg_scale"),
        "width": data.get("width"),
        "height": data.get("height"),
    }
    generation = str(data.get("generation_mode", "txt2img"))
    if "inpaint" in generation or "outpaint" in generation:
        found["mode"] = Mode.INPAINT.value
    elif "img2img" in generation:
        found["mode"] = Mode.IMG2IMG.value
    else:
        found["mode"] = Mode.TXT2IMG.value
    if found["mode"] != Mode.TXT2IMG.value:
        found["strength"] = data.get("strength")
    if isinstance(data.get("scheduler"), str):
        found["sampler"], warning = map_sampler(data["scheduler"])
        if warning:
            warnings.append(warning)
    model = data.get("model")
    model_name = model_hash = ""
    if isinstance(model, dict):
        model_name = text_value(model.get("name") or model.get("model_name") or "")
        model_hash = text_value(model.get("hash") or "")
    elif isinstance(model, str):
        model_name = model
    if model_hash and not re.fullmatch(r"(sha256:)?[0-9a-fA-F]{64}", model_hash):
        extra_hash = model_hash  # blake3 etc.: not an A1111 hash
        model_hash = ""
    else:
        extra_hash = ""
    extra: dict[str, str] = {}
    if extra_hash:
        extra["Model hash (InvokeAI)"] = extra_hash
    loras = []
    for item in data.get("loras") or []:
        if isinstance(item, dict):
            lora = item.get("lora") or item.get("model") or {}
            name = lora.get("name") or lora.get("model_name") if isinstance(lora, dict) else None
            if name:
                loras.append(f"{name}: {format_number(to_float(item.get('weight')) or 1.0)}")
    if loras:
        extra["LoRAs"] = ", ".join(loras)
    if data.get("app_version"):
        extra["Version"] = f"InvokeAI {data['app_version']}"
    if data.get("scheduler"):
        extra["Scheduler"] = text_value(data["scheduler"])
    skip = {"positive_prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "model",
            "loras", "app_version", "scheduler", "strength"}
    for key, value in data.items():
        if key not in skip and value not in (None, "", [], {}, 0):
            extra.setdefault(label_value(key), text_value(value))
    return finish_fields("invokeai", found, warnings, raw=raw, model_name=model_name, model_hash=model_hash, extra=extra)


def parse_sd_metadata(text: str, raw: dict[str, str], source: str, warnings: list[str]) -> ImageMetadata | None:
    data = json_object(text, "sd-metadata", warnings)
    if data is None:
        return None
    image = data.get("image")
    if image is None and isinstance(data.get("images"), list) and data["images"]:
        image = data["images"][0]
    if not isinstance(image, dict):
        warnings.append('the "sd-metadata" has no image settings; ignored')
        return None
    prompt = image.get("prompt")
    if isinstance(prompt, list):
        parts = [p for p in prompt if isinstance(p, dict) and isinstance(p.get("prompt"), str)]
        if len(parts) > 1:
            warnings.append("a blend of several weighted prompts was joined into one")
        prompt = ", ".join(p["prompt"] for p in parts)
    found: dict[str, Any] = {}
    if isinstance(prompt, str):
        found["prompt"], found["negative_prompt"] = _split_invoke_negative(prompt)
    for key, name in (("seed", "seed"), ("steps", "steps"), ("cfg_scale", "guidance_scale"),
                      ("width", "width"), ("height", "height")):
        found[name] = image.get(key)
    kind = str(image.get("type", "txt2img"))
    found["mode"] = Mode.IMG2IMG.value if kind == "img2img" else Mode.INPAINT.value if "inpaint" in kind else Mode.TXT2IMG.value
    if found["mode"] != Mode.TXT2IMG.value:
        found["strength"] = image.get("strength")
    if isinstance(image.get("sampler"), str):
        found["sampler"], warning = map_sampler(image["sampler"])
        if warning:
            warnings.append(warning)
    extra: dict[str, str] = {}
    if data.get("app_id") or data.get("app_version"):
        extra["Version"] = f"{data.get('app_id', '')} {data.get('app_version', '')}".strip()
    for key in ("sampler", "seamless", "hires_fix", "variations", "postprocessing", "threshold", "perlin"):
        if image.get(key) not in (None, "", [], False, 0):
            extra[label_value(key)] = text_value(image[key])
    model_name = text_value(data.get("model_weights") or data.get("model_id") or data.get("model") or "")
    return finish_fields(source, found, warnings, raw=raw, model_name=model_name,
                   model_hash=text_value(data.get("model_hash") or ""), extra=extra)


_DREAM_OPTIONS = {
    "-s": "steps", "--steps": "steps", "-S": "seed", "--seed": "seed", "-W": "width", "--width": "width",
    "-H": "height", "--height": "height", "-C": "guidance_scale", "--cfg_scale": "guidance_scale",
    "-A": "sampler", "--sampler": "sampler", "--sampler_name": "sampler", "-f": "strength",
    "--strength": "strength", "-I": "Init image", "--init_img": "Init image", "-M": "Init mask",
    "--init_mask": "Init mask", "-m": "Model", "--model": "Model", "-n": "Iterations", "--iterations": "Iterations",
}


def _dream_tokens(text: str) -> list[str]:
    if len(text) <= 100_000:
        try:
            return shlex.split(text)
        except ValueError:
            pass
    quoted = re.match(r'\s*"((?:[^"\\]|\\.)*)"(.*)$', text, re.S)
    if quoted:
        return [quoted.group(1).replace('\\"', '"')] + quoted.group(2).split()
    return text.split()


def parse_dream(text: str, raw: dict[str, str], source: str, warnings: list[str]) -> ImageMetadata:
    tokens = _dream_tokens(text)
    prompt_parts: list[str] = []
    options: dict[str, str] = {}
    flags: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", token) and len(token) > 1:
            name, _, inline = token.partition("=")
            if not inline and not name.startswith("--") and len(name) > 2:  # "-s50"
                name, inline = name[:2], name[2:]
            if inline:
                options[name] = inline
            elif i + 1 < len(tokens) and not (tokens[i + 1].startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", tokens[i + 1])):
                options[name] = tokens[i + 1]
                i += 1
            else:
                flags.append(name)
        elif not options and not flags:
            prompt_parts.append(token)
        i += 1
    found: dict[str, Any] = {}
    found["prompt"], found["negative_prompt"] = _split_invoke_negative(" ".join(prompt_parts))
    extra: dict[str, str] = {}
    model_name = ""
    for name, value in options.items():
        target = _DREAM_OPTIONS.get(name)
        if target == "sampler":
            found["sampler"], warning = map_sampler(value)
            if warning:
                warnings.append(warning)
            extra["Sampler"] = value
        elif target == "Model":
            model_name = value
        elif target and target[0].islower():
            found[target] = value
        else:
            extra[target or name] = value
    for flag in flags:
        extra[flag.lstrip("-")] = "true"
    found["mode"] = Mode.IMG2IMG.value if "Init image" in extra else Mode.TXT2IMG.value
    if "Init mask" in extra:
        found["mode"] = Mode.INPAINT.value
    if found["mode"] == Mode.TXT2IMG.value:
        found.pop("strength", None)
    return finish_fields(source, found, warnings, raw=raw, model_name=model_name, extra=extra)

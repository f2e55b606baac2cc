"""Reading ComfyUI's graphs: the ``prompt`` chunk (the executed graph, "API format"), traced back from
its sampler node, and, when a file has no such chunk, the ``workflow`` chunk (the editor graph, "UI
format"), turned into the API form first.

The sampler is a KSampler (Advanced) or a SamplerCustom (Advanced) node: for the latter (FLUX's usual
graph) the seed comes from its noise node (RandomNoise), the steps and scheduler from its sigmas node
(BasicScheduler), the sampler from KSamplerSelect and the conditioning and model from its guider
(BasicGuider, CFGGuider). FLUX's distilled guidance (FluxGuidance, CLIPTextEncodeFlux on the positive
conditioning) is the guidance recorded; the model is the checkpoint or UNETLoader file, and a
DualCLIPLoader's files are named as the text encoders.
"""

from __future__ import annotations

from typing import Any

from engine.api import Mode
from engine.metadata.fields import ImageMetadata, finish_fields, format_number, json_object, model_stem, map_sampler


_TEXT_KEYS = ("text", "text_g", "string", "value", "prompt", "Text", "STRING", "text_positive")
_FLUX_GUIDANCE = ("FluxGuidance", "CLIPTextEncodeFlux")  # nodes whose "guidance" is FLUX's distilled guidance
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
        keys = ("t5xxl", "clip_l") if self.cls(nid) == "CLIPTextEncodeFlux" else ("text", "text_g", "prompt")
        texts = [t for key in keys if key in inputs and isinstance(t := self.value(inputs[key], (str,), _TEXT_KEYS), str)]
        if texts:  # CLIPTextEncodeFlux: the T5 prompt (the CLIP-L one when T5's is empty)
            return next((t for t in texts if t.strip()), texts[0])
        if (upstream := self.upstream(nid, role)) is not None:
            return self.text(upstream, role, depth + 1)
        return None

    def upstream(self, nid: str, role: str) -> list | None:
        """The conditioning link a pass-through conditioning node (FluxGuidance, ConditioningCombine…) takes."""
        inputs = self.inputs(nid)
        for key in (role, "conditioning", "conditioning_1", "conditioning_to", "base_" + role):
            if _link(inputs.get(key)) is not None:
                return inputs[key]
        return None

    def on_chain(self, value: Any, role: str, classes: tuple[str, ...], depth: int = 0) -> str | None:
        """The first node of one of ``classes`` up a conditioning link, or None."""
        nid = _link(value)
        if nid is None or depth > 16:
            return None
        if self.cls(nid) in classes:
            return nid
        upstream = self.upstream(nid, role)
        return self.on_chain(upstream, role, classes, depth + 1) if upstream is not None else None

    def latent_origin(self, value: Any, depth: int = 0) -> tuple[str, str | None]:
        nid = _link(value)
        if nid is None or depth > 16:
            return "unknown", None
        cls, inputs = self.cls(nid), self.inputs(nid)
        low = cls.lower()
        if "empty" in low and "latent" in low:
            return "empty", nid
        if _is_sampler(cls):
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


def _is_sampler(cls: str) -> bool:
    """KSampler, KSamplerAdvanced (and custom nodes named so), SamplerCustom, SamplerCustomAdvanced; not
    KSamplerSelect (it only names the sampler)."""
    return ("KSampler" in cls and not cls.endswith("Select")) or cls.startswith("SamplerCustom")


def _sampler_inputs(graph: _Graph, nid: str) -> dict[str, Any]:
    """A sampler node's inputs in KSampler's terms (seed, steps, cfg, sampler_name, scheduler, denoise,
    model, positive, negative, latent_image, add_noise): a SamplerCustom (Advanced) node's are spread
    over its noise, guider, sampler and sigmas nodes."""
    inputs = dict(graph.inputs(nid))
    cls = graph.cls(nid)
    if not cls.startswith("SamplerCustom"):
        return inputs
    sigmas = graph.inputs(_link(inputs.get("sigmas")))
    picked = graph.inputs(_link(inputs.get("sampler")))
    out = {"latent_image": inputs.get("latent_image"), "steps": sigmas.get("steps"),
           "denoise": sigmas.get("denoise", 1.0), "scheduler": sigmas.get("scheduler"),
           "sampler_name": picked.get("sampler_name")}
    if cls == "SamplerCustom":  # the noise and guidance are its own inputs
        out.update({k: inputs.get(k) for k in ("noise_seed", "cfg", "model", "positive", "negative")})
        out["add_noise"] = "disable" if inputs.get("add_noise") in (False, "disable") else "enable"
        return out
    noise_id = _link(inputs.get("noise"))
    out["noise_seed"] = graph.inputs(noise_id).get("noise_seed")
    out["add_noise"] = "disable" if graph.cls(noise_id) == "DisableNoise" else "enable"
    guider = graph.inputs(_link(inputs.get("guider")))  # BasicGuider: conditioning; CFGGuider: positive, negative, cfg
    out.update(positive=guider.get("positive", guider.get("conditioning")), negative=guider.get("negative"),
               cfg=guider.get("cfg"), model=guider.get("model", sigmas.get("model")))
    return out


def parse_comfyui(text: str, raw: dict[str, str], warnings: list[str]) -> ImageMetadata | None:
    """The settings of ComfyUI's ``prompt`` chunk (the executed graph), or None when it is not a graph."""
    data = json_object(text, "prompt", warnings)
    if data is None:
        return None
    return _parse_graph(data, raw, warnings)


def parse_comfyui_workflow(text: str, raw: dict[str, str], warnings: list[str]) -> ImageMetadata | None:
    """The settings of ComfyUI's ``workflow`` chunk (the editor graph) for a file that has no ``prompt``
    chunk, or None when it is not an editor graph."""
    local: list[str] = []
    data = json_object(text, "workflow", local)
    nodes = data.get("nodes") if data is not None else None
    if not isinstance(nodes, list) or not nodes:
        return None
    try:
        prompt = workflow_to_prompt(data)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError):  # a damaged or odd graph
        warnings.append("the ComfyUI workflow could not be read")
        return None
    found = _parse_graph(prompt, raw, warnings)
    if found is not None:
        found.extra["Graph"] = "the ComfyUI editor workflow (no executed prompt in the file)"
    return found


def _parse_graph(data: dict[str, Any], raw: dict[str, str], warnings: list[str]) -> ImageMetadata | None:
    graph = _Graph(data)
    samplers = [nid for nid in data if _is_sampler(graph.cls(nid))]
    if not samplers:
        if any(isinstance(n, dict) and "class_type" in n for n in data.values()):
            warnings.append("the ComfyUI graph has no sampler node (KSampler, SamplerCustomAdvanced); "
                            "its settings were not read")
            return finish_fields("comfyui", {}, warnings, raw=raw)
        return None

    def rank(nid: str) -> tuple[int, int, Any]:
        inputs = _sampler_inputs(graph, nid)
        origin, _ = graph.latent_origin(inputs.get("latent_image"))
        start = graph.number(inputs.get("start_at_step", 0)) or 0
        noise = inputs.get("add_noise", "enable") != "disable"
        return (origin == "sampler", (start > 0) or not noise, _node_order(nid))

    nid = min(samplers, key=rank)
    inputs = _sampler_inputs(graph, nid)
    found: dict[str, Any] = {}
    extra: dict[str, str] = {}
    found["prompt"] = graph.text(inputs.get("positive"), "positive")
    negative = graph.text(inputs.get("negative"), "negative")
    found["negative_prompt"] = negative if negative is not None else ""
    if found["prompt"] is None:
        warnings.append("the positive prompt could not be traced in the ComfyUI graph")
    if negative is None and _link(inputs.get("negative")) is not None:
        warnings.append("the negative prompt could not be traced in the ComfyUI graph")
    found["seed"] = graph.number(inputs.get("seed", inputs.get("noise_seed")))  # a Python int: 64 bits kept whole
    found["steps"] = graph.number(inputs.get("steps"))
    cfg = graph.number(inputs.get("cfg"))
    found["guidance_scale"] = cfg
    flux = graph.on_chain(inputs.get("positive"), "positive", _FLUX_GUIDANCE)
    if flux is not None:  # FLUX's distilled guidance is what Easel records as the guidance (its CFG stays 1)
        flux_inputs = graph.inputs(flux)
        found["guidance_scale"] = graph.number(flux_inputs.get("guidance"))
        if cfg is not None and cfg != 1:
            extra["CFG"] = format_number(cfg)
        encoder = graph.on_chain(inputs.get("positive"), "positive", ("CLIPTextEncodeFlux",))
        clip_l = graph.value(graph.inputs(encoder).get("clip_l"), (str,), _TEXT_KEYS) if encoder else None
        if isinstance(clip_l, str) and clip_l.strip() and clip_l != found["prompt"]:
            extra["CLIP-L prompt"] = clip_l
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
    encoders = [name for n in data if graph.cls(n).endswith("CLIPLoader")  # (Dual/Triple)CLIPLoader
                for key, name in sorted(graph.inputs(n).items()) if key.startswith("clip_name") and isinstance(name, str)]
    if encoders:
        extra["Text encoders"] = ", ".join(dict.fromkeys(encoders))
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


# The editor graph (``workflow``) keeps each node's widget values as a list, in the order its class
# declares them: the names of the nodes whose settings are read. After a seed widget ComfyUI stores
# its "control after generate" choice, which is skipped.
_WIDGETS = {
    "KSampler": ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": ("add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "start_at_step",
                         "end_at_step", "return_with_leftover_noise"),
    "SamplerCustom": ("add_noise", "noise_seed", "cfg"),
    "RandomNoise": ("noise_seed",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "KSamplerSelect": ("sampler_name",),
    "CFGGuider": ("cfg",),
    "FluxGuidance": ("guidance",),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl", "guidance"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "UnetLoaderGGUF": ("unet_name",),
    "DualCLIPLoader": ("clip_name1", "clip_name2", "type", "device"),
    "CLIPLoader": ("clip_name", "type", "device"),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "ModelSamplingFlux": ("max_shift", "base_shift", "width", "height"),
    "PrimitiveNode": ("value",),
}
_SEED_CONTROLS = ("fixed", "increment", "decrement", "randomize")


def workflow_to_prompt(workflow: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's editor graph (``{"nodes": [...], "links": [[id, from, slot, to, slot, type], ...]}``) as
    its executed form (``{id: {"class_type", "inputs"}}``): links become ``[node, slot]`` pairs (through
    Reroute nodes), widget values get their names. Muted nodes are left out."""
    nodes = {str(n.get("id")): n for n in workflow.get("nodes", []) if isinstance(n, dict) and "id" in n}
    links: dict[Any, tuple[str, int]] = {}
    for link in workflow.get("links", []) or []:
        if isinstance(link, list) and len(link) >= 5:
            links[link[0]] = (str(link[1]), link[2] if isinstance(link[2], int) else 0)
        elif isinstance(link, dict) and "id" in link:  # the newer frontend's form
            links[link["id"]] = (str(link.get("origin_id")), int(link.get("origin_slot") or 0))

    def source(link_id: Any, depth: int = 0) -> list | None:
        origin = links.get(link_id)
        if origin is None or depth > 32:
            return None
        node = nodes.get(origin[0], {})
        if node.get("type") == "Reroute":  # pass-through: follow its own input
            ins = node.get("inputs")
            first = ins[0] if isinstance(ins, list) and ins and isinstance(ins[0], dict) else {}
            return source(first.get("link"), depth + 1)
        return [origin[0], origin[1]]

    out: dict[str, Any] = {}
    for nid, node in nodes.items():
        cls = str(node.get("type", ""))
        if cls == "Reroute" or node.get("mode") == 2:
            continue
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if isinstance(values, dict):  # some nodes store them by name already
            inputs.update(values)
        elif isinstance(values, list):
            names = _WIDGETS.get(cls, ("value",) if len(values) == 1 else ())
            it = iter(values)
            for name in names:
                value = next(it, None)
                if name in ("seed", "noise_seed") and (peek := next(it, None)) not in _SEED_CONTROLS and peek is not None:
                    it = iter([peek, *it])  # no control value stored after this seed
                inputs[name] = value
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and slot.get("name") and (linked := source(slot.get("link"))) is not None:
                inputs[str(slot["name"])] = linked
        out[nid] = {"class_type": cls, "inputs": inputs}
    return out

"""What reading yields and the checks every reader shares.

``ImageMetadata`` (the result of reading), the keys and format version of what we write, every
tool's sampler names mapped onto ours (``map_sampler``), and the coercion and clamping of values
into ``GenerationRequest``'s limits (``finish_fields``) that each format's parser ends with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.api import MAX_BATCH, MAX_CLIP_SKIP, MAX_SEED, MAX_SIZE, MAX_STEPS, MEMORY_PRESETS, MIN_SIZE, MIN_STEPS, SAMPLERS
from engine.api import MAX_HIRES_SCALE, MIN_TILE, PLAIN_UPSCALER, SPEEDS, hires_size, latent_name
from engine.api import GenerationRequest, Mode

FORMAT_VERSION = 1
EASEL_KEY = "easel"
PARAMETERS_KEY = "parameters"


# ============================================================================================
# The result of reading
# ============================================================================================


@dataclass(frozen=True)
class ImageMetadata:
    """What an image says about how it was made.

    source: "easel" | "a1111" | "comfyui" | "invokeai" | "fooocus" | "nmkd" | "none"
    fields: values under ``GenerationRequest`` field names, only those found, already checked
        against the request's limits (so ``to_request`` does not fail on them).
    model_name / model_hash: the checkpoint as the tool named it; the hash is A1111-style (first 10
        hex digits of the SHA-256) where the tool wrote a SHA-256, else as written.
    extra: every other setting found, as text (Clip skip, Lora hashes, Schedule type, Version ...).
    raw: the text chunks (or EXIF texts) read, by key.
    warnings: one plain-language line per value that could not be used as written.
    """

    source: str
    fields: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    model_hash: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.source != "none"

    @property
    def upscale(self) -> str:
        """How the image was upscaled ("" when it is not an upscale). Any thread.

        A GAN upscale keeps its source's settings (as A1111's Extras tab does) and adds a
        ``postprocessing`` chunk; a diffusion x4 upscale runs as an image-to-image request, which
        must not be shown as "Mode img2img".
        """
        line = self.raw.get("postprocessing", "").strip()
        if line:
            return line
        if self.extra.get(UPSCALE_BY):
            return f"Postprocess upscale by: {self.extra[UPSCALE_BY]}, Postprocess upscaler: {self.model_name}"
        return ""

    def to_request(self, **overrides: Any) -> GenerationRequest:
        """A request from the fields found, defaults for the rest; ``overrides`` win.

        img2img/inpaint need images that metadata cannot carry: unless ``init_image`` (and for
        inpaint ``mask``) is given in ``overrides``, the mode read from the file falls back to
        img2img or txt2img (``fields["mode"]`` still says what the file recorded). ``model`` is
        a path: pass ``model=`` after resolving ``model_name``/``model_hash`` to a local file.
        """
        data = dict(self.fields)
        data.setdefault("prompt", "")
        if "mode" not in overrides:
            mode = Mode(data.get("mode", Mode.TXT2IMG))
            has_init = overrides.get("init_image") is not None
            if mode is Mode.INPAINT and overrides.get("mask") is None:
                mode = Mode.IMG2IMG
            if mode is Mode.IMG2IMG and not has_init:
                mode = Mode.TXT2IMG
            data["mode"] = mode
        data.update(overrides)
        if Mode(data.get("mode", Mode.TXT2IMG)) is not Mode.TXT2IMG:
            data.pop("hires_scale", None)  # the hires fix enlarges a new image only
        if Mode(data.get("mode", Mode.TXT2IMG)) is not Mode.IMG2IMG:
            data.pop("tile", None)  # tiles are img2img's (a detail upscale restored without its source)
        return GenerationRequest.from_dict(data)


# ============================================================================================
# Samplers: every tool's names onto ours
# ============================================================================================

# normalised name -> (our base kind, whether the algorithm itself exists in Easel)
_SAMPLER_KINDS: dict[str, tuple[str, bool]] = {}
for _kind, _exact, _names in (
    ("Euler", True, "euler"),
    ("Euler a", True, "eulera eulerancestral"),
    ("Euler", False, "eulercfgpp lms heun heunpp2 dpm2 kdpm2 dpmfast dpmad dpmadaptive restart"),
    ("Euler a", False, "eulerancestralcfgpp dpm2a kdpm2a dpm2ancestral dpmpp2sa dpmpp2sancestral "
                       "dpmpp2sancestralcfgpp dpmpp2a ddpm"),
    ("DPM++ 2M", True, "dpmpp2m dpmpp2"),
    ("DPM++ 2M", False, "dpmpp2mcfgpp dpmpp2s dpmpp3m deis ipndm ipndmv resmultistep resmultistepcfgpp "
                        "gradientestimation gradientestimationcfgpp"),
    ("DPM++ SDE", True, "dpmppsde dpmppsdegpu"),
    ("DPM++ SDE", False, "dpmpp2msde dpmpp2msdegpu dpmpp2msdeheun dpmpp2msdeheungpu dpmpp3msde dpmpp3msdegpu "
                         "ersde sasolver sasolverpece seeds2 seeds3 resmultistepancestral "
                         "resmultistepancestralcfgpp"),
    ("DDIM", True, "ddim"),
    ("DDIM", False, "ddimcfgpp plms pndm"),
    ("UniPC", True, "unipc"),
    ("UniPC", False, "unipcbh2"),
    ("LCM", True, "lcm"),
    ("LCM", False, "tcd"),
):
    for _name in _names.split():
        _SAMPLER_KINDS[_name] = (_kind, _exact)

# Schedules that are the model's own spacing, or close enough to it to call the same.
_UNIFORM_SCHEDULES = {"", "uniform", "normal", "simple", "sgmuniform", "ddimuniform", "ddim", "default", "none"}
DEFAULT_SAMPLER = "Euler a"


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("++", "pp").replace("+", "p"))


def map_sampler(name: str, schedule: str | None = None) -> tuple[str, str | None]:
    """(one of SAMPLERS, warning or None) for a sampler (+ schedule) named by any known tool.

    Accepts A1111 names old ("DPM++ 2M Karras") and new ("DPM++ 2M" + schedule "Karras"),
    ComfyUI ("dpmpp_2m" + "karras"), InvokeAI ("dpmpp_2m_k") and InvokeAI 2.x ("k_euler_a").
    ``schedule=None`` means the tool wrote none; "Automatic" is A1111's default for the sampler.
    """
    shown = name if not schedule or _norm(schedule) == "automatic" else f"{name} {schedule}"
    if name in SAMPLERS and schedule is None:
        return name, None
    low = name.strip().lower()
    sched = _norm(schedule) if schedule is not None else None
    if low.startswith("k_"):
        low = low[2:]
    if re.fullmatch(r"[a-z0-9_]+_k", low):  # InvokeAI: "_k" = Karras sigmas
        low, sched = low[:-2], "karras"
    base = _norm(low)
    for suffix in ("karras", "exponential"):
        if base.endswith(suffix) and base != suffix:
            base, sched = base[: -len(suffix)], suffix
    kind, exact = _SAMPLER_KINDS.get(base, (DEFAULT_SAMPLER, False))
    if kind == "DPM++ 2M":
        # A1111 >= 1.9's "Automatic" for DPM++ 2M is Karras.
        if sched in ("karras", "automatic"):
            ours = "DPM++ 2M Karras"
        elif sched is None or sched in _UNIFORM_SCHEDULES:
            ours = "DPM++ 2M"
        else:
            ours, exact = "DPM++ 2M Karras", False
    elif kind == "DPM++ SDE":
        ours = "DPM++ SDE Karras"
        exact = exact and sched in ("karras", "automatic")
    else:
        ours = kind
        exact = exact and (sched is None or sched == "automatic" or sched in _UNIFORM_SCHEDULES)
    if exact:
        return ours, None
    return ours, f'sampler "{shown}" is not available; using {ours}'


# ============================================================================================
# Field checking shared by every reader
# ============================================================================================

# The parameter a diffusion upscaler's Result records (its request is image-to-image): the factor.
UPSCALE_BY = "Upscale by"

_INT_FIELDS = ("steps", "seed", "width", "height", "batch_count", "mask_blur", "mask_padding", "clip_skip",
               "hires_steps", "tile", "tile_overlap")
_FLOAT_FIELDS = ("guidance_scale", "strength", "hires_scale", "hires_strength")
_STR_FIELDS = ("prompt", "negative_prompt", "model", "vae", "upscaler")


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if re.fullmatch(r"[+-]?\d+\.0*", text):
            return int(text.split(".")[0])  # not via float: a 64-bit seed would lose its low digits
    return None


def to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int):
        return bool(value)
    return None


def _controls(value: Any, warnings: list[str]) -> tuple:
    """The control inputs stored in an ``easel`` chunk (each with its image), those that can be read."""
    from engine.api import ControlInput, InvalidRequest

    if not isinstance(value, list):
        warnings.append("the stored control inputs are not a list; ignored")
        return ()
    out = []
    for i, item in enumerate(value):
        try:
            out.append(ControlInput.from_dict(item))
        except InvalidRequest as e:
            warnings.append(f"control input {i} cannot be used ({str(e).removeprefix('controls: ')}); left out")
    return tuple(out)


def _references(value: Any, warnings: list[str]) -> tuple:
    """The reference images stored in an ``easel`` chunk, those that can be read."""
    from engine.api import InvalidRequest, ReferenceInput

    if not isinstance(value, list):
        warnings.append("the stored reference images are not a list; ignored")
        return ()
    out = []
    for i, item in enumerate(value):
        try:
            out.append(ReferenceInput.from_dict(item))
        except InvalidRequest as e:
            warnings.append(f"reference image {i} cannot be used ({str(e).removeprefix('references: ')}); left out")
    return tuple(out)


def _regions(value: Any, warnings: list[str]) -> tuple:
    """The regions stored in an ``easel`` chunk (each with its mask), those that can be read."""
    from engine.api import InvalidRequest, RegionInput

    if not isinstance(value, list):
        warnings.append("the stored regions are not a list; ignored")
        return ()
    out = []
    for i, item in enumerate(value):
        try:
            out.append(RegionInput.from_dict(item))
        except InvalidRequest as e:
            warnings.append(f"region {i + 1} cannot be used ({str(e).removeprefix('regions: ')}); left out")
    return tuple(out)


def _clean_fields(found: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Coerce types and bring values into GenerationRequest's limits, warning for each change."""
    out: dict[str, Any] = {}
    for key, value in found.items():
        if value is None:
            continue
        if key in _STR_FIELDS:
            if isinstance(value, str):
                out[key] = value
            else:
                warnings.append(f"{key} is not text; ignored")
        elif key in _INT_FIELDS:
            number = _to_int(value)
            if number is None:
                warnings.append(f"{key} {value!r} is not a whole number; ignored")
            else:
                out[key] = number
        elif key in _FLOAT_FIELDS:
            number = to_float(value)
            if number is None:
                warnings.append(f"{key} {value!r} is not a number; ignored")
            else:
                out[key] = number
        elif key == "sampler":
            if value in SAMPLERS:
                out[key] = value
            else:
                out[key], warning = map_sampler(str(value))
                if warning:
                    warnings.append(warning)
        elif key == "mode":
            try:
                out[key] = Mode(value).value
            except (ValueError, TypeError):
                warnings.append(f"mode {value!r} is unknown; ignored")
        elif key == "only_masked":
            flag = _to_bool(value)
            if flag is not None:
                out[key] = flag
        elif key == "memory_preset":
            if value in MEMORY_PRESETS:
                out[key] = value
        elif key == "controls":
            controls = _controls(value, warnings)
            if controls:
                out[key] = controls
        elif key == "references":
            references = _references(value, warnings)
            if references:
                out[key] = references
        elif key == "regions":
            regions = _regions(value, warnings)
            if regions:
                out[key] = regions
        elif key == "speed":
            if value in SPEEDS:
                out[key] = value
            else:
                warnings.append(f"speed {value!r} is unknown; using standard")

    def clamp(key: str, lo: float, hi: float, label: str) -> None:
        if key in out and not lo <= out[key] <= hi:
            new = min(max(out[key], lo), hi)
            warnings.append(f"{label} {format_number(out[key])} is out of range; using {format_number(new)}")
            out[key] = new

    clamp("steps", MIN_STEPS, MAX_STEPS, "steps")
    clamp("guidance_scale", 0.0, 30.0, "CFG scale")
    clamp("batch_count", 1, MAX_BATCH, "batch size")
    clamp("mask_blur", 0, 256, "mask blur")
    clamp("mask_padding", 0, 1024, "masked area padding")
    clamp("clip_skip", 1, MAX_CLIP_SKIP, "clip skip")
    for key in ("width", "height"):
        if key in out:
            value = out[key]
            new = min(max(int(round(value / 8)) * 8, MIN_SIZE), MAX_SIZE)
            if new != value:
                warnings.append(f"{key} {value} is not a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}; using {new}")
                out[key] = new
    if "seed" in out:
        seed = out["seed"]
        if seed < 0:
            warnings.append(f"seed {seed} is negative; a random seed will be used")
            del out["seed"]
        elif seed > MAX_SEED:
            out["seed"] = seed % (MAX_SEED + 1)
            warnings.append(f"seed {seed} is above Easel's largest ({MAX_SEED}); using {out['seed']}")
    if "strength" in out and not 0.0 < out["strength"] <= 1.0:
        warnings.append(f"denoising strength {format_number(out['strength'])} is out of range; ignored")
        del out["strength"]
    _clean_detail(out, warnings)
    return out


def _clean_detail(out: dict[str, Any], warnings: list[str]) -> None:
    """The hires fix and tiled img2img fields: out of range is dropped with a warning (never a failing request)."""
    if "hires_strength" in out and not 0.0 < out["hires_strength"] <= 1.0:
        warnings.append(f"hires denoising strength {format_number(out['hires_strength'])} is out of range; ignored")
        del out["hires_strength"]
    if "hires_steps" in out and not 0 <= out["hires_steps"] <= MAX_STEPS:
        out["hires_steps"] = min(max(out["hires_steps"], 0), MAX_STEPS)
        warnings.append(f"hires steps out of range; using {out['hires_steps']}")
    if "hires_scale" in out:
        scale = out["hires_scale"]
        w, h = hires_size(out.get("width", 512), out.get("height", 512), scale) if scale else (0, 0)
        if scale and not (1.0 <= scale <= MAX_HIRES_SCALE and max(w, h) <= MAX_SIZE):
            warnings.append(f"hires upscale {format_number(scale)} is out of range (1 to {MAX_HIRES_SCALE:g}, at "
                            f"most {MAX_SIZE} px); the hires fix is left off")
            del out["hires_scale"]
    if "upscaler" in out and latent_name(out["upscaler"]) and out.get("hires_scale"):
        out["upscaler"] = latent_name(out["upscaler"])  # the hires fix's latent upscalers (SD, SDXL)
    elif "upscaler" in out and out["upscaler"].strip().lower().startswith(("latent", "none")) or out.get("upscaler") == "":
        warnings.append(f"hires upscaler {out['upscaler'] or '(none)'} is not in Easel; using {PLAIN_UPSCALER}")
        out["upscaler"] = PLAIN_UPSCALER
    if "tile" in out and out["tile"] and (out["tile"] < MIN_TILE or out["tile"] % 8 or out["tile"] > MAX_SIZE):
        warnings.append(f"tile size {out['tile']} is not a multiple of 8 from {MIN_TILE} to {MAX_SIZE}; ignored")
        del out["tile"]
    if "tile_overlap" in out:
        out["tile_overlap"] = min(max(out["tile_overlap"], 0), out.get("tile", MAX_SIZE) // 2 or MAX_SIZE // 2)


def _norm_hash(value: Any) -> str:
    """A1111's model hash: first 10 hex digits of SHA-256 (a full SHA-256 is shortened)."""
    text = str(value or "").strip()
    if text.lower().startswith("sha256:"):
        text = text[7:]
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return text[:10].lower()
    return text


def model_stem(name: str) -> str:
    stem = re.split(r"[\\/]", name.strip())[-1]
    return re.sub(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$", "", stem, flags=re.I)


def text_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def finish_fields(
    source: str,
    found: dict[str, Any],
    warnings: list[str],
    *,
    raw: dict[str, str],
    model_name: str = "",
    model_hash: str = "",
    extra: dict[str, str] | None = None,
) -> ImageMetadata:
    fields = _clean_fields(found, warnings)
    return ImageMetadata(
        source=source,
        fields=fields,
        model_name=model_name,
        model_hash=_norm_hash(model_hash),
        extra=extra or {},
        raw=raw,
        warnings=tuple(warnings),
    )


# ============================================================================================
# Small helpers the writer and the readers share
# ============================================================================================


def format_number(value: int | float) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return str(int(value))
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def json_object(text: str, what: str, warnings: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        warnings.append(f'the "{what}" metadata is not valid JSON; ignored')
        return None
    if not isinstance(data, dict):
        warnings.append(f'the "{what}" metadata is not a JSON object; ignored')
        return None
    return data


def label_value(key: str) -> str:
    return key.replace("_", " ").capitalize() if key == key.lower() else key

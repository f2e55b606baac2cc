"""Image metadata: write ours (an exact JSON recipe) plus A1111 ``parameters``; read every known format.

Writing (PNG): ``png_info`` puts two text chunks in the file. ``parameters`` is the A1111 text that
other tools (A1111, Forge, SD.Next, Civitai, image browsers) understand; ``easel`` is an iTXt chunk
holding JSON with the exact request, so Easel regenerates exactly this image from it.

Reading: ``read_metadata`` never raises. It tries, in order: our ``easel`` chunk; ``parameters``
(A1111 text, or Fooocus JSON); ComfyUI ``prompt`` (the executed graph); InvokeAI
``invokeai_metadata``; InvokeAI 2.x / NMKD ``sd-metadata`` and ``Dream``; JPEG/WebP EXIF
UserComment (A1111, Fooocus) and the JPEG comment. Values are mapped onto ``GenerationRequest``
field names and checked against its limits; anything out of range or not available in Easel
(a sampler, a seed above 2**32-1, a size not a multiple of 8) is mapped to the nearest value with
a warning the UI can show.

NMKD Stable Diffusion GUI writes the InvokeAI 2.x ``Dream`` command line (optionally with
``sd-metadata``): prompt with the negative in ``[brackets]``, ``-s`` steps, ``-S`` seed, ``-W``/``-H``
size, ``-C`` CFG scale, ``-A`` sampler, ``-f`` strength. Those files cannot be told apart from
InvokeAI 2.x ones unless a chunk names NMKD, so they are reported as "invokeai" unless one does.
Not read: ComfyUI's ``workflow`` chunk alone (the editor graph), NovelAI, Easy Diffusion, XMP.

PNG text chunks are read by a small chunk reader of our own rather than through Pillow: Pillow
refuses to open a file whose compressed text chunk inflates past ``PngImagePlugin.MAX_TEXT_CHUNK``
(1 MiB), and reading only chunk headers skips decoding the pixels. Chunks above ``MAX_CHUNK_BYTES``
are skipped with a warning.

Qt-free and torch-free: stdlib, pillow, engine.api, and engine.images for the mask chunk.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shlex
import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.api import MAX_BATCH, MAX_CLIP_SKIP, MAX_SEED, MAX_SIZE, MAX_STEPS, MEMORY_PRESETS, MIN_SIZE, MIN_STEPS, SAMPLERS
from engine.api import GenerationRequest, Mode, Result

FORMAT_VERSION = 1
EASEL_KEY = "easel"
PARAMETERS_KEY = "parameters"
MAX_CHUNK_BYTES = 32 * 1024 * 1024  # one text chunk, raw or inflated; larger ones are skipped
MAX_TEXT_BYTES = 128 * 1024 * 1024  # all text chunks of one file together

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_MAKER_NOTE = 0x927C
_SOFTWARE = 0x0131


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
        return GenerationRequest.from_dict(data)


# ============================================================================================
# Writing
# ============================================================================================


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
    text = _format_number(value) if isinstance(value, (int, float)) else str(value)
    if "," in text or ":" in text or "\n" in text or "\r" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def _format_number(value: int | float) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return str(int(value))
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def a1111_parameters(
    request: GenerationRequest,
    seed: int,
    *,
    model_name: str,
    model_hash: str,
    extra: dict[str, str] | None = None,
) -> str:
    """The A1111 ``parameters`` text for one image of ``request`` made with ``seed``.

    Prompt (may span lines), then ``Negative prompt: ...`` (left out when empty), then one line of
    ``key: value`` pairs; a value holding ``,`` ``:`` or a newline is JSON-quoted as A1111 does.
    ``extra`` pairs (e.g. "Lora hashes", "Clip skip") come last, in the order given.
    """
    sampler, schedule = _karras_split(request.sampler)
    pairs: list[tuple[str, Any]] = [
        ("Steps", request.steps),
        ("Sampler", sampler),
        ("Schedule type", schedule),
        ("CFG scale", request.guidance_scale),
        ("Seed", seed),
        ("Size", f"{request.width}x{request.height}"),
        ("Model hash", model_hash),
        ("Model", model_name),
    ]
    if request.mode in (Mode.IMG2IMG, Mode.INPAINT):
        pairs.append(("Denoising strength", request.strength))
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
    text = a1111_parameters(result.request, seed, model_name=result.model.name, model_hash=result.model_hash,
                            extra=pairs)
    info.add_text(PARAMETERS_KEY, text)  # tEXt when Latin-1, else iTXt (Pillow decides)
    # Patched as a dict rather than request.replace(): no re-validation, so a Result whose request
    # dropped its init image still saves.
    # The model is recorded by file name and hash, never its full path: images get shared, and a
    # path shows the user's folders (often their user name). Restoring finds the model by hash/name.
    model_file = Path(result.model.path).name
    recipe_request = {**result.request.to_dict(), "seed": seed, "batch_count": 1, "model": model_file}
    if recipe_request.get("vae"):  # like the model: the file name, never the user's folders
        recipe_request["vae"] = Path(recipe_request["vae"]).name
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
    exif[_EXIF_IFD] = {_USER_COMMENT: b"UNICODE\0" + parameters.encode("utf-16-be")}
    return exif


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

_INT_FIELDS = ("steps", "seed", "width", "height", "batch_count", "mask_blur", "mask_padding", "clip_skip")
_FLOAT_FIELDS = ("guidance_scale", "strength")
_STR_FIELDS = ("prompt", "negative_prompt", "model", "vae")


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
            return int(float(text))
    return None


def _to_float(value: Any) -> float | None:
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
            number = _to_float(value)
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

    def clamp(key: str, lo: float, hi: float, label: str) -> None:
        if key in out and not lo <= out[key] <= hi:
            new = min(max(out[key], lo), hi)
            warnings.append(f"{label} {_format_number(out[key])} is out of range; using {_format_number(new)}")
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
        warnings.append(f"denoising strength {_format_number(out['strength'])} is out of range; ignored")
        del out["strength"]
    return out


def _norm_hash(value: Any) -> str:
    """A1111's model hash: first 10 hex digits of SHA-256 (a full SHA-256 is shortened)."""
    text = str(value or "").strip()
    if text.lower().startswith("sha256:"):
        text = text[7:]
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return text[:10].lower()
    return text


def _model_stem(name: str) -> str:
    stem = re.split(r"[\\/]", name.strip())[-1]
    return re.sub(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$", "", stem, flags=re.I)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _finish(
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
# A1111 text
# ============================================================================================

_STEPS_PAIR = re.compile(r"(?:^|,)\s*Steps:\s*\d+")
_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")
_HIRES_KEYS = ("Hires upscale", "Hires resize", "Hires steps", "Hires upscaler")


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
    param_at = next((i for i in range(len(lines) - 1, -1, -1) if _STEPS_PAIR.search(lines[i])), None)
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
    if source == "a1111" and values.get("Version", "").lower().startswith("fooocus"):
        source = "fooocus"
    return _finish(source, found, warnings, raw=raw if raw is not None else {PARAMETERS_KEY: text},
                   model_name=model_name, model_hash=model_hash, extra=extra)


# ============================================================================================
# Easel's own chunk
# ============================================================================================


def _parse_easel(text: str, raw: dict[str, str]) -> ImageMetadata | None:
    warnings: list[str] = []
    data = _json_object(text, EASEL_KEY, warnings)
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
            extra[label] = _text(model[key])
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    for key, label in (("device", "Device"), ("dtype", "Dtype"), ("preset", "Memory preset")):
        if settings.get(key):
            extra[label] = _text(settings[key])
    timings = data.get("timings") if isinstance(data.get("timings"), dict) else {}
    if isinstance(timings.get("total"), (int, float)):
        extra["Time taken"] = f"{timings['total']:.1f} s"
    if data.get("created"):
        extra["Created"] = _text(data["created"])
    if isinstance(data.get("extra"), dict):
        extra.update({str(k): _text(v) for k, v in data["extra"].items()})
    return _finish("easel", found, warnings, raw=raw, model_name=_text(model.get("name") or ""),
                   model_hash=_text(model.get("hash") or ""), extra=extra)


def _json_object(text: str, what: str, warnings: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        warnings.append(f'the "{what}" metadata is not valid JSON; ignored')
        return None
    if not isinstance(data, dict):
        warnings.append(f'the "{what}" metadata is not a JSON object; ignored')
        return None
    return data


# ============================================================================================
# Fooocus JSON
# ============================================================================================


def _parse_fooocus_json(data: dict[str, Any], raw: dict[str, str], warnings: list[str]) -> ImageMetadata:
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
    extra = {_label(k): _text(v) for k, v in data.items() if k not in used and v not in (None, "", [], "None")}
    return _finish("fooocus", found, warnings, raw=raw, model_name=_model_stem(_text(get("base_model", "Base Model") or "")),
                   model_hash=_text(data.get("base_model_hash") or ""), extra=extra)


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize() if key == key.lower() else key


# ============================================================================================
# ComfyUI graph
# ============================================================================================

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
            loras.append(f"{_model_stem(inputs['lora_name'])}: {_format_number(strength if strength is not None else 1.0)}")
        return self.model(inputs.get("model"), loras, depth + 1)


def _is_ksampler(cls: str) -> bool:
    return "KSampler" in cls


def _parse_comfyui(text: str, raw: dict[str, str], warnings: list[str]) -> ImageMetadata | None:
    data = _json_object(text, "prompt", warnings)
    if data is None:
        return None
    graph = _Graph(data)
    samplers = [nid for nid in data if _is_ksampler(graph.cls(nid))]
    if not samplers:
        if any(isinstance(n, dict) and "class_type" in n for n in data.values()):
            warnings.append("the ComfyUI graph has no KSampler node; its settings were not read")
            return _finish("comfyui", {}, warnings, raw=raw)
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
        extra["Denoise"] = _format_number(denoise)
    loras: list[str] = []
    checkpoint = graph.model(inputs.get("model"), loras)
    if checkpoint:
        extra["Checkpoint"] = checkpoint
    if loras:
        extra["LoRAs"] = ", ".join(reversed(loras))
    if len(samplers) > 1:
        extra["Sampler nodes"] = str(len(samplers))
    return _finish("comfyui", found, warnings, raw=raw, model_name=_model_stem(checkpoint), extra=extra)


def _node_order(nid: str) -> tuple[int, float, str]:
    try:
        return (0, float(nid), nid)
    except ValueError:
        return (1, 0.0, nid)


# ============================================================================================
# InvokeAI (3.x+ JSON, 2.x sd-metadata and Dream) and NMKD
# ============================================================================================


def _split_invoke_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 2.x / NMKD put the negative prompt in [brackets] inside the prompt."""
    negatives = re.findall(r"\[([^\[\]]*)\]", prompt)
    if not negatives:
        return prompt, ""
    positive = re.sub(r"\s*\[[^\[\]]*\]\s*", " ", prompt).strip()
    return positive, ", ".join(n.strip() for n in negatives if n.strip())


def _parse_invokeai(text: str, raw: dict[str, str], warnings: list[str]) -> ImageMetadata | None:
    data = _json_object(text, "invokeai_metadata", warnings)
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
        model_name = _text(model.get("name") or model.get("model_name") or "")
        model_hash = _text(model.get("hash") or "")
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
                loras.append(f"{name}: {_format_number(_to_float(item.get('weight')) or 1.0)}")
    if loras:
        extra["LoRAs"] = ", ".join(loras)
    if data.get("app_version"):
        extra["Version"] = f"InvokeAI {data['app_version']}"
    if data.get("scheduler"):
        extra["Scheduler"] = _text(data["scheduler"])
    skip = {"positive_prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "model",
            "loras", "app_version", "scheduler", "strength"}
    for key, value in data.items():
        if key not in skip and value not in (None, "", [], {}, 0):
            extra.setdefault(_label(key), _text(value))
    return _finish("invokeai", found, warnings, raw=raw, model_name=model_name, model_hash=model_hash, extra=extra)


def _parse_sd_metadata(text: str, raw: dict[str, str], source: str, warnings: list[str]) -> ImageMetadata | None:
    data = _json_object(text, "sd-metadata", warnings)
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
            extra[_label(key)] = _text(image[key])
    model_name = _text(data.get("model_weights") or data.get("model_id") or data.get("model") or "")
    return _finish(source, found, warnings, raw=raw, model_name=model_name,
                   model_hash=_text(data.get("model_hash") or ""), extra=extra)


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


def _parse_dream(text: str, raw: dict[str, str], source: str, warnings: list[str]) -> ImageMetadata:
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
    return _finish(source, found, warnings, raw=raw, model_name=model_name, extra=extra)


# ============================================================================================
# Getting the texts out of a file
# ============================================================================================


def _read_png_texts(fp: BinaryIO, warnings: list[str]) -> tuple[dict[str, str], bytes | None]:
    """Text chunks (tEXt, zTXt, iTXt) and the eXIf chunk of a PNG, without decoding pixels."""
    texts: dict[str, str] = {}
    exif: bytes | None = None
    total = 0
    if fp.read(8) != _PNG_SIGNATURE:
        warnings.append("not a PNG file")
        return texts, exif
    while True:
        header = fp.read(8)
        if len(header) < 8:
            warnings.append("the PNG file ends early (no IEND chunk)")
            break
        length, ctype = struct.unpack(">I4s", header)
        if ctype == b"IEND":
            break
        if ctype not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
            fp.seek(length + 4, io.SEEK_CUR)
            continue
        if length > MAX_CHUNK_BYTES or total + length > MAX_TEXT_BYTES:
            warnings.append(f"a {ctype.decode()} chunk of {length / 2**20:.1f} MB is too large to read; skipped")
            fp.seek(length + 4, io.SEEK_CUR)
            continue
        data = fp.read(length)
        fp.seek(4, io.SEEK_CUR)  # CRC (not checked: a bad CRC still leaves readable text)
        if len(data) < length:
            warnings.append("the PNG file is truncated")
            break
        total += length
        if ctype == b"eXIf":
            exif = data
            continue
        try:
            key, value = _decode_text_chunk(ctype, data)
        except ValueError as error:
            warnings.append(f"a {ctype.decode()} chunk could not be read ({error}); skipped")
            continue
        total += len(value)
        texts.setdefault(key, value)
    return texts, exif


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CHUNK_BYTES)
    except zlib.error as error:
        raise ValueError(f"bad compressed data: {error}") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"inflates to more than {MAX_CHUNK_BYTES // 2**20} MB")
    return out


def _decode_text_chunk(ctype: bytes, data: bytes) -> tuple[str, str]:
    key_bytes, sep, rest = data.partition(b"\0")
    if not sep:
        raise ValueError("no keyword")
    key = key_bytes.decode("latin-1")
    if ctype == b"tEXt":
        return key, rest.decode("latin-1")
    if ctype == b"zTXt":
        return key, _inflate(rest[1:]).decode("latin-1")
    if len(rest) < 2:
        raise ValueError("short iTXt chunk")
    compressed, body = rest[0], rest[2:]
    _lang, _, body = body.partition(b"\0")
    _translated, _, body = body.partition(b"\0")
    if compressed:
        body = _inflate(body)
    return key, body.decode("utf-8", errors="replace")


def decode_user_comment(value: Any) -> str:
    """EXIF UserComment as text: an 8-byte charset code ("UNICODE\\0" UTF-16 either endian, "ASCII")."""
    if isinstance(value, str):
        return value.rstrip("\0")
    if not isinstance(value, (bytes, bytearray)):
        return ""
    data = bytes(value)
    code, body = data[:8], data[8:]
    if code == b"UNICODE\0":
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            text = body.decode("utf-16", errors="replace")
        else:
            even = body[0::2].count(0)
            odd = body[1::2].count(0)
            text = body.decode("utf-16-be" if even >= odd else "utf-16-le", errors="replace")
    elif code in (b"ASCII\0\0\0", b"\0" * 8) or code.startswith(b"JIS"):
        text = _utf8_or_latin1(body)
    else:
        text = _utf8_or_latin1(data)
    return text.rstrip("\0")


def _utf8_or_latin1(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _exif_texts(exif: Image.Exif, texts: dict[str, str]) -> None:
    try:
        comment = exif.get(_USER_COMMENT)
        if comment is None:
            comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
        if comment is not None:
            text = decode_user_comment(comment)
            if text.strip():
                texts.setdefault("UserComment", text)
        for tag, name in ((_MAKER_NOTE, "MakerNote"), (_SOFTWARE, "Software")):
            value = exif.get(tag)
            if isinstance(value, bytes):
                value = _utf8_or_latin1(value).rstrip("\0")
            if isinstance(value, str) and value and len(value) < 4096:
                texts.setdefault(name, value)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not stop reading
        pass


def _texts_from_image(image: Image.Image, warnings: list[str]) -> dict[str, str]:
    texts: dict[str, str] = {}
    info = dict(getattr(image, "info", {}) or {})
    try:
        more = getattr(image, "text", None)  # PNG chunks after IDAT (loads the image)
        if isinstance(more, dict):
            info.update({k: v for k, v in more.items() if k not in info})
    except Exception as error:  # noqa: BLE001
        warnings.append(f"some text chunks could not be read ({error})")
    for key, value in info.items():
        if isinstance(value, str):
            texts[str(key)] = str(value)
        elif key == "comment" and isinstance(value, (bytes, bytearray)):
            texts["comment"] = _utf8_or_latin1(bytes(value))
    try:
        _exif_texts(image.getexif(), texts)
    except Exception:  # noqa: BLE001
        pass
    return texts


def _texts_from_file(fp: BinaryIO, warnings: list[str]) -> dict[str, str]:
    start = fp.tell()
    head = fp.read(8)
    fp.seek(start)
    if head == _PNG_SIGNATURE:
        texts, exif_bytes = _read_png_texts(fp, warnings)
        if exif_bytes:
            exif = Image.Exif()
            try:
                exif.load(exif_bytes)
                _exif_texts(exif, texts)
            except Exception:  # noqa: BLE001
                warnings.append("the PNG's EXIF block could not be read")
        return texts
    with Image.open(fp) as image:
        return _texts_from_image(image, warnings)


# ============================================================================================
# Reading: the entry point
# ============================================================================================


def read_metadata(source: str | Path | Image.Image | BinaryIO) -> ImageMetadata:
    """How an image was made, from whichever tool wrote it; never raises.

    ``source``: a path, an open binary file, or a PIL image. Our ``easel`` chunk is read first
    (exact); then A1111/Fooocus ``parameters``, ComfyUI, InvokeAI, NMKD, EXIF UserComment.
    ``source == "none"`` when nothing was found or the file could not be read (see warnings).
    Runs on any thread; reading a path touches only the file's header and text chunks.
    """
    warnings: list[str] = []
    try:
        if isinstance(source, Image.Image):
            texts = _texts_from_image(source, warnings)
        elif isinstance(source, (str, Path)):
            with open(source, "rb") as fp:
                texts = _texts_from_file(fp, warnings)
        else:
            texts = _texts_from_file(source, warnings)
    except Exception as error:  # noqa: BLE001 - unreadable files are a "none" result, not a crash
        warnings.append(f"the image could not be read ({type(error).__name__}: {error})")
        return ImageMetadata("none", warnings=tuple(warnings))
    try:
        return _interpret(texts, warnings)
    except Exception as error:  # noqa: BLE001 - a parser bug must not take the gallery down
        warnings.append(f"the metadata could not be interpreted ({type(error).__name__}: {error})")
        return ImageMetadata("none", raw=texts, warnings=tuple(warnings))


def _interpret(texts: dict[str, str], warnings: list[str]) -> ImageMetadata:
    if EASEL_KEY in texts:
        found = _parse_easel(texts[EASEL_KEY], texts)
        if found is not None:
            return _with_warnings(found, warnings)
        warnings.append("the Easel metadata is damaged; reading the other metadata instead")

    parameters = texts.get(PARAMETERS_KEY)
    scheme = texts.get("fooocus_scheme")
    if parameters is None and "UserComment" in texts:
        parameters = texts["UserComment"]
        scheme = scheme or texts.get("MakerNote")
    if parameters is not None and parameters.strip():
        stripped = parameters.strip()
        json_like = stripped.startswith("{") and stripped.endswith("}")
        if scheme == "fooocus" or json_like:
            local: list[str] = []
            data = _json_object(stripped, "parameters", local)
            if data is not None:
                return _with_warnings(_parse_fooocus_json(data, texts, local), warnings)
            if scheme == "fooocus":
                warnings.extend(local)
        if scheme != "fooocus":
            source = "fooocus" if scheme == "a1111" or "fooocus" in texts.get("Software", "").lower() else "a1111"
            return _with_warnings(parse_a1111(parameters, raw=texts, source=source), warnings)

    if texts.get("prompt", "").lstrip().startswith("{"):
        found = _parse_comfyui(texts["prompt"], texts, warnings)
        if found is not None:
            return found
    if "invokeai_metadata" in texts:
        found = _parse_invokeai(texts["invokeai_metadata"], texts, warnings)
        if found is not None:
            return found
    nmkd = any("nmkd" in (k + " " + v[:2000]).lower() for k, v in texts.items()
               if k not in ("Dream", "sd-metadata")) or "nmkd" in texts.get("sd-metadata", "")[:4000].lower()
    legacy_source = "nmkd" if nmkd else "invokeai"
    if "sd-metadata" in texts:
        found = _parse_sd_metadata(texts["sd-metadata"], texts, legacy_source, warnings)
        if found is not None:
            return found
    if "Dream" in texts and texts["Dream"].strip():
        return _parse_dream(texts["Dream"], texts, legacy_source, warnings)
    comment = texts.get("comment", "")
    if _STEPS_PAIR.search(comment):
        return _with_warnings(parse_a1111(comment, raw=texts), warnings)
    return ImageMetadata("none", raw=texts, warnings=tuple(warnings))


def _with_warnings(found: ImageMetadata, earlier: list[str]) -> ImageMetadata:
    if not earlier:
        return found
    return dataclasses.replace(found, warnings=tuple(earlier) + found.warnings)

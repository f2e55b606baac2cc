"""The engine's public vocabulary: requests in, progress events and results out, and the errors.

Everything here is a frozen dataclass or an exception; nothing imports torch, diffusers or Qt, so
the desktop app can build requests and show results without loading the heavy stack.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pillow is cheap, but keep the annotation-only import explicit
    from PIL import Image


# --------------------------------------------------------------------------------------------
# Errors. Every error a user can cause is an EaselError whose str() is one plain-language line.
# --------------------------------------------------------------------------------------------


class EaselError(Exception):
    """An error meant for the user: ``str(error)`` is one line of plain language."""


class InvalidRequest(EaselError, ValueError):
    """A request field is out of range or missing; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class ModelError(EaselError):
    """A model file or folder cannot be used (missing, malformed, unsupported, unsafe)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class UnsupportedModel(ModelError):
    """A well-formed file of a kind or family Easel cannot run (yet)."""


class UnsafeModelFile(ModelError):
    """A pickle-based file (.ckpt/.pt/.bin, or a pickle renamed): never unpickled."""


class Cancelled(EaselError):
    """The job was cancelled through its token; no image was produced."""

    def __init__(self, step: int = 0, total: int = 0):
        super().__init__("cancelled" + (f" at step {step} of {total}" if total else ""))
        self.step = step
        self.total = total


class OutOfMemory(EaselError):
    """The device ran out of memory even on the lowest memory preset."""


class DownloadError(EaselError):
    """A model download failed, was refused (no disk space) or did not verify."""


class ImageError(EaselError):
    """An input image (init image or mask) cannot be read or used."""


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------


class Mode(str, enum.Enum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"


# Sampler names exactly as A1111 writes them in "Sampler:" (plus "Schedule type" for Karras).
SAMPLERS: tuple[str, ...] = (
    "Euler",
    "Euler a",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DDIM",
    "UniPC",
    "LCM",
)

MEMORY_PRESETS: tuple[str, ...] = ("auto", "fast", "balanced", "low", "minimal")

# Standard: the model as loaded. Fast: compiled for this device (same pixels). Draft: a step cache
# (a little quality for speed). engine.core.speed puts them on.
SPEEDS: tuple[str, ...] = ("standard", "fast", "draft")

MIN_SIZE, MAX_SIZE = 64, 4096
MIN_STEPS, MAX_STEPS = 1, 150
# 64-bit, as ComfyUI's seeds (0 to 2**64-1): an image made elsewhere is restored with its own seed.
# torch.Generator.manual_seed takes the whole range.
MAX_SEED = 2**64 - 1
MAX_BATCH = 64
MAX_CLIP_SKIP = 12
# Characters in a prompt or negative prompt. A1111 prompts of 75-token chunks rarely pass 2,000
# characters; past this the text encoder would run hundreds of chunks (minutes) for one image.
MAX_PROMPT_CHARS = 20_000

# What a control input (ControlNet) steers with. A family's Capabilities.control_kinds says which it takes.
CONTROL_KINDS: tuple[str, ...] = ("scribble", "lineart", "canny", "depth", "pose", "tile", "inpaint")
MAX_CONTROLS = 4
MAX_CONTROL_STRENGTH = 2.0  # A1111's ControlNet "Weight" range
# Reference images (IP-Adapter's; an instruction editor's further inputs): how many at once, and the weight
# range (A1111's IP-Adapter "Weight").
MAX_REFERENCES = 4
MAX_REFERENCE_WEIGHT = 2.0
# Regions (regional prompting: an area of the image with its own prompt): how many at once.
MAX_REGIONS = 8

# Hires fix (A1111's): txt2img at the size asked, enlarged by ``hires_scale`` (at most this), then img2img
# at the large size. "Lanczos" is the plain resize; any other ``upscaler`` names a GAN upscaler file.
MAX_HIRES_SCALE = 4.0
PLAIN_UPSCALER = "Lanczos"
# A1111's latent upscalers, as it names them (the hires fix only: the first pass's latents are enlarged):
# name -> (torch interpolation mode, antialias).
LATENT_UPSCALERS: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}


def latent_name(name: str) -> str:
    """A1111's spelling of the latent upscaler ``name`` (any case), "" when it names none. Any thread."""
    wanted = " ".join(str(name).split()).lower()
    return next((known for known in LATENT_UPSCALERS if known.lower() == wanted), "")
MIN_TILE = 64  # the smallest tile of a tiled (detail upscale) img2img


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The hires fix's final size: ``width`` x ``height`` times ``scale``, on the 8 px grid (A1111's rule). Any thread."""
    return (max(8, int(round(width * scale / 8)) * 8), max(8, int(round(height * scale / 8)) * 8))


def random_seed() -> int:
    """A fresh random seed. Any thread.

    Drawn below 2**32 on purpose: a seed a user reads, types or shares stays short (as A1111's),
    while a 64-bit seed from another tool's image is still kept whole.
    """
    import secrets  # here, not at the top: hmac/random stay off the window's start-up path

    return secrets.randbelow(2**32)


def batch_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a batch that starts at ``seed``: ``seed + index``, wrapping past
    MAX_SEED to 0 (so a batch from the largest seed stays valid). Any thread."""
    return (seed + index) % (MAX_SEED + 1)


class _PictureInput:
    """What the request's picture inputs (ControlInput, ReferenceInput, RegionInput: dataclasses with a
    picture field, ``_picture``: "image" or "mask") share: JSON with the picture as base64 PNG, and reading
    it back."""

    _picture: ClassVar[str] = "image"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the picture included as base64 PNG (``image_png`` / ``mask_png``) with its hash
        (``image_hash`` / ``mask_hash``)."""
        pic = self._picture
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != pic}
        d[f"{pic}_png"] = image_to_base64(getattr(self, pic))
        d[f"{pic}_hash"] = image_hash(getattr(self, pic))
        return d

    @classmethod
    def _fields_from(cls, data: Any, field_name: str, what: str) -> dict[str, Any]:
        """The constructor's fields in ``to_dict`` output (the picture may also be a PIL image)."""
        if not isinstance(data, dict):
            raise InvalidRequest(field_name, f"each {what} must be a set of fields")
        pic = cls._picture
        kwargs = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        if pic not in kwargs and isinstance(data.get(f"{pic}_png"), str):
            try:
                kwargs[pic] = image_from_base64(data[f"{pic}_png"])
            except InvalidRequest:
                raise InvalidRequest(field_name, f"a stored {what} {pic} is not a readable PNG") from None
        return kwargs


@dataclass(frozen=True)
class ControlInput(_PictureInput):
    """One control input (a ControlNet): the control image and how strongly, when, and with what it steers.

    ``kind``: one of CONTROL_KINDS. ``image``: the control image as the control model sees it (PIL;
    already preprocessed: edges for canny, a depth map for depth; ``engine.preprocess`` makes them).
    ``model``: the control model, a path or its name in the model library ("" = the library's
    control model for the generator's family and ``kind``). ``strength``: 0-2 (A1111's Weight).
    ``start``/``end``: the fraction of the steps it acts on (0-1). ``preprocessor``: what made
    ``image`` from the artist's picture ("canny", "" = the image was given as is; recorded only).
    ``model_hash``: the control model's hash, filled in by the engine in ``Result.request``.
    Construction validates every field and raises ``InvalidRequest`` (field "controls").
    """

    kind: str
    image: Image.Image = field(compare=False, repr=False)
    model: str = ""
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocessor: str = ""
    model_hash: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CONTROL_KINDS:
            raise InvalidRequest("controls", f"unknown control kind {self.kind!r}; choose one of {', '.join(CONTROL_KINDS)}")
        if not hasattr(self.image, "size") or not hasattr(self.image, "convert"):
            raise InvalidRequest("controls", f"the {self.kind} control has no image")
        if not isinstance(self.model, str):
            raise InvalidRequest("controls", f"the {self.kind} control model must be a path or a name")
        for name, hi in (("strength", MAX_CONTROL_STRENGTH), ("start", 1.0), ("end", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= hi:
                raise InvalidRequest("controls", f"the {self.kind} control's {name} must be from 0 to {hi:g} (got {value!r})")
        if self.start > self.end:
            raise InvalidRequest("controls", f"the {self.kind} control starts ({self.start:g}) after it ends ({self.end:g})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ControlInput:
        """From ``to_dict`` output (``image`` may also be a PIL image); InvalidRequest when it is not one."""
        if isinstance(data, ControlInput):
            return data
        kwargs = cls._fields_from(data, "controls", "control")
        if "image" not in kwargs:
            raise InvalidRequest("controls", f"the {data.get('kind', '')} control has no image".replace("  ", " "))
        if "kind" not in kwargs:
            raise InvalidRequest("controls", "a control has no kind")
        return cls(**kwargs)


@dataclass(frozen=True)
class ReferenceInput(_PictureInput):
    """One reference image (IP-Adapter): the picture whose style or subject the result takes, and how much.

    ``image``: the reference picture (PIL). ``weight``: 0-2 (the IP-Adapter scale; 0 acts on nothing).
    ``model``: the IP-Adapter, a path or its name in the model library ("" = the library's IP-Adapter
    for the generator's family). ``encoder``: the CLIP vision image encoder it reads the picture with
    (a path; "" = found beside the adapter or in the library). ``model_hash``: the adapter's hash,
    filled in by the engine in ``Result.request``. Construction validates every field and raises
    ``InvalidRequest`` (field "references").
    """

    image: Image.Image = field(compare=False, repr=False)
    weight: float = 1.0
    model: str = ""
    encoder: str = ""
    model_hash: str = ""

    def __post_init__(self) -> None:
        if not hasattr(self.image, "size") or not hasattr(self.image, "convert"):
            raise InvalidRequest("references", "a reference has no image")
        for name in ("model", "encoder", "model_hash"):
            if not isinstance(getattr(self, name), str):
                raise InvalidRequest("references", f"the reference's {name} must be a path or a name")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= MAX_REFERENCE_WEIGHT:
            raise InvalidRequest("references", f"a reference's weight must be from 0 to {MAX_REFERENCE_WEIGHT:g} (got {w!r})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceInput:
        """From ``to_dict`` output (``image`` may also be a PIL image); InvalidRequest when it is not one."""
        if isinstance(data, ReferenceInput):
            return data
        kwargs = cls._fields_from(data, "references", "reference")
        if "image" not in kwargs:
            raise InvalidRequest("references", "a reference has no image")
        return cls(**kwargs)


@dataclass(frozen=True)
class RegionInput(_PictureInput):
    """One region (regional prompting): an area of the image and the prompt it shows.

    ``mask``: where the region is (PIL, kept as L: white = the area, grey = partly; a canvas region
    layer's painted alpha). It is stretched to the input image (img2img / inpaint) or to the output size
    (text to image). ``prompt``: what the area shows (A1111 syntax where the family takes it; no
    ``<lora:…>``: LoRAs act on the whole image). The main prompt goes everywhere else. ``weight``: 0-1, how
    much of the area follows the region's prompt rather than the main one (1: only the region's; 0: acts
    on nothing). Construction validates every field and raises ``InvalidRequest`` (field "regions").
    """

    _picture: ClassVar[str] = "mask"
    mask: Image.Image = field(compare=False, repr=False)
    prompt: str = ""
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not hasattr(self.mask, "size") or not hasattr(self.mask, "convert"):
            raise InvalidRequest("regions", "a region has no mask (the area its prompt goes to)")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InvalidRequest("regions", "a region has no prompt: say what its area shows")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest("regions", f"a region's prompt is {len(self.prompt):,} characters long; the limit "
                                 f"is {MAX_PROMPT_CHARS:,}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise InvalidRequest("regions", f"a region's weight must be from 0 to 1 (got {w!r})")
        if self.mask.mode != "L":
            object.__setattr__(self, "mask", self.mask.convert("L"))
        if self.mask.getbbox() is None:
            raise InvalidRequest("regions", f"the region \"{_short(self.prompt)}\" has no area: its mask is all "
                                 "black (paint where its prompt goes)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegionInput:
        """From ``to_dict`` output (``mask`` may also be a PIL image); InvalidRequest when it is not one."""
        if isinstance(data, RegionInput):
            return data
        kwargs = cls._fields_from(data, "regions", "region")
        if "mask" not in kwargs:
            raise InvalidRequest("regions", "a region has no mask (the area its prompt goes to)")
        return cls(**kwargs)


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def image_to_base64(image: Image.Image) -> str:
    """``image`` as base64 PNG text (RGB, RGBA or L): lossless, so the pixels come back exactly. Any thread."""
    import base64
    import io

    buf = io.BytesIO()
    im = image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def image_from_base64(text: str) -> Image.Image:
    """The RGB (RGBA when it has transparency) image ``image_to_base64`` wrote; InvalidRequest (one line)
    for text that is not one."""
    import base64
    import binascii
    import io

    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(base64.b64decode(text, validate=True)), formats=["PNG"]) as im:
            im.load()
            return im.convert("RGBA" if im.mode in ("RGBA", "LA") or "transparency" in im.info else "RGB")
    except (binascii.Error, OSError, ValueError, PILImage.DecompressionBombError):
        raise InvalidRequest("controls", "a stored control image is not a readable PNG") from None


def image_hash(image: Image.Image) -> str:
    """The first 10 hex digits of the SHA-256 of the image's RGB (or RGBA) pixels (a control image's
    hash). Any thread."""
    import hashlib

    return hashlib.sha256(image.convert("RGBA" if image.mode == "RGBA" else "RGB").tobytes()).hexdigest()[:10]


@dataclass(frozen=True)
class GenerationRequest:
    """One job: what to make, with which model, how.

    ``seed=None`` means random: the engine picks one and records it in ``Result.request``.
    Image ``i`` of a batch uses seed ``seed + i`` (as A1111 does), so any one image of a batch
    can be regenerated alone.
    ``init_image`` (img2img, inpaint) and ``mask`` (inpaint; white = regenerate) are PIL images.
    The prompts use A1111 syntax: ``(word:1.2)``, ``(word)``, ``[word]``, ``BREAK``, any length,
    ``<lora:name:0.8>`` tags and textual-inversion embeddings by name (``engine.prompts``).
    ``clip_skip`` 1 is the model's own text-encoder output, 2 the layer before it (A1111's meaning).
    ``vae`` is a VAE file that replaces the checkpoint's own ("" keeps it).
    ``speed`` is one of SPEEDS: "standard", "fast" (compiled; same pixels) or "draft" (a step cache).
    ``controls``: control inputs (ControlNets, ``ControlInput``), applied together; a model whose
    capabilities take no control kinds refuses them.
    ``references``: reference images (``ReferenceInput``: a picture and a weight), applied together: an
    IP-Adapter's (SD 1.5 / SDXL: the result takes their style or subject) or, for an instruction editor
    that takes them, its further input images beside ``init_image`` (Qwen-Image-Edit Plus: "put the hat of
    image 2 on the cat"); a model whose capabilities take none refuses them (``Capabilities.references``).
    Hires fix (txt2img only): ``hires_scale`` 0 is off; from 1 to 4 the image made at width x height is
    enlarged by that factor with ``upscaler`` and refined by an img2img pass of ``hires_steps`` (0: as
    many as ``steps``) at ``hires_strength`` (A1111's "Denoising strength"), as one job.
    Tiled img2img (detail upscale): ``tile`` > 0 enlarges the init image to width x height with
    ``upscaler``, then runs img2img over overlapping tiles of at most ``tile`` px (sharing
    ``tile_overlap`` px, cross-faded), so memory is bounded by the tile size.
    ``upscaler``: "Lanczos" (a plain resize) or a GAN upscaler's file, or its name in the model library;
    for the hires fix also one of LATENT_UPSCALERS ("Latent": the first pass's latents enlarged).
    ``regions``: areas with their own prompts (``RegionInput``: a mask, a prompt, a weight), bottom first (a
    later region wins where they overlap); the main prompt goes everywhere outside them. Applied by
    attention masking (``engine.core.regions``); a model whose capabilities take none refuses them
    (``Capabilities.regions``).
    Construction validates every field and raises ``InvalidRequest`` naming the bad one.
    """

    prompt: str
    model: str = ""
    mode: Mode = Mode.TXT2IMG
    negative_prompt: str = ""
    seed: int | None = None
    steps: int = 25
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    sampler: str = "Euler a"
    batch_count: int = 1
    strength: float = 0.75
    init_image: Image.Image | None = field(default=None, compare=False, repr=False)
    mask: Image.Image | None = field(default=None, compare=False, repr=False)
    only_masked: bool = False
    mask_padding: int = 32
    mask_blur: int = 4
    memory_preset: str = "auto"
    clip_skip: int = 1
    vae: str = ""
    speed: str = "standard"
    controls: tuple[ControlInput, ...] = ()
    references: tuple[ReferenceInput, ...] = ()
    regions: tuple[RegionInput, ...] = ()
    hires_scale: float = 0.0
    hires_steps: int = 0
    hires_strength: float = 0.5
    upscaler: str = PLAIN_UPSCALER
    tile: int = 0
    tile_overlap: int = 128

    def __post_init__(self) -> None:
        if isinstance(self.mode, str) and not isinstance(self.mode, Mode):
            try:
                object.__setattr__(self, "mode", Mode(self.mode))
            except ValueError:
                raise InvalidRequest("mode", f"must be one of {', '.join(m.value for m in Mode)}") from None
        if not isinstance(self.controls, (tuple, list)):
            raise InvalidRequest("controls", "must be a list of control inputs")
        object.__setattr__(self, "controls", tuple(ControlInput.from_dict(c) for c in self.controls))
        if len(self.controls) > MAX_CONTROLS:
            raise InvalidRequest("controls", f"at most {MAX_CONTROLS} control inputs at once (got {len(self.controls)})")
        if not isinstance(self.references, (tuple, list)):
            raise InvalidRequest("references", "must be a list of reference images")
        object.__setattr__(self, "references", tuple(ReferenceInput.from_dict(r) for r in self.references))
        if len(self.references) > MAX_REFERENCES:
            raise InvalidRequest("references", f"at most {MAX_REFERENCES} reference images at once "
                                 f"(got {len(self.references)})")
        if not isinstance(self.regions, (tuple, list)):
            raise InvalidRequest("regions", "must be a list of regions")
        object.__setattr__(self, "regions", tuple(RegionInput.from_dict(r) for r in self.regions))
        if len(self.regions) > MAX_REGIONS:
            raise InvalidRequest("regions", f"at most {MAX_REGIONS} regions at once (got {len(self.regions)})")
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.prompt, str):
            raise InvalidRequest("prompt", "must be text")
        if not isinstance(self.negative_prompt, str):
            raise InvalidRequest("negative_prompt", "must be text")
        for name in ("prompt", "negative_prompt"):
            n = len(getattr(self, name))
            if n > MAX_PROMPT_CHARS:
                raise InvalidRequest(name, f"is {n:,} characters long; the limit is {MAX_PROMPT_CHARS:,} "
                                           "(shorten it: the text encoder reads it 75 tokens at a time)")
        for name, lo, hi in (("width", MIN_SIZE, MAX_SIZE), ("height", MIN_SIZE, MAX_SIZE)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi or v % 8:
                raise InvalidRequest(name, f"must be a multiple of 8 from {lo} to {hi} (got {v})")
        _int_range("steps", self.steps, MIN_STEPS, MAX_STEPS)
        _int_range("batch_count", self.batch_count, 1, MAX_BATCH)
        if self.seed is not None:
            _int_range("seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.guidance_scale, (int, float)) or not 0.0 <= self.guidance_scale <= 30.0:
            raise InvalidRequest("guidance_scale", f"must be from 0 to 30 (got {self.guidance_scale})")
        if self.sampler not in SAMPLERS:
            raise InvalidRequest("sampler", f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.memory_preset not in MEMORY_PRESETS:
            raise InvalidRequest("memory_preset", f"must be one of {', '.join(MEMORY_PRESETS)}")
        if self.speed not in SPEEDS:
            raise InvalidRequest("speed", f"must be one of {', '.join(SPEEDS)} (got {self.speed!r})")
        _int_range("mask_padding", self.mask_padding, 0, 1024)
        _int_range("clip_skip", self.clip_skip, 1, MAX_CLIP_SKIP)
        if not isinstance(self.vae, str):
            raise InvalidRequest("vae", "must be a file path or empty")
        _int_range("mask_blur", self.mask_blur, 0, 256)
        if self.mode in (Mode.IMG2IMG, Mode.INPAINT):
            if self.init_image is None:
                raise InvalidRequest("init_image", f"{self.mode.value} needs an init image")
            if not isinstance(self.strength, (int, float)) or not 0.0 < self.strength <= 1.0:
                raise InvalidRequest("strength", f"must be above 0 and at most 1 (got {self.strength})")
        if self.mode is Mode.INPAINT:
            if self.mask is None:
                raise InvalidRequest("mask", "inpaint needs a mask (white = the region to regenerate)")
            if self.mask.size != self.init_image.size:
                raise InvalidRequest(
                    "mask", f"mask is {self.mask.size[0]}x{self.mask.size[1]} but the image is "
                    f"{self.init_image.size[0]}x{self.init_image.size[1]}"
                )
            if self.mask.convert("L").getbbox() is None:
                raise InvalidRequest("mask", "the mask is empty (all black): paint the region to regenerate")
        self._validate_detail()

    def _validate_detail(self) -> None:
        """The hires fix and tiled img2img fields: one plain line per mistake."""
        scale = self.hires_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
                scale == 0 or 1.0 <= scale <= MAX_HIRES_SCALE):
            raise InvalidRequest("hires_scale", f"must be 0 (off) or from 1 to {MAX_HIRES_SCALE:g} (got {scale!r})")
        _int_range("hires_steps", self.hires_steps, 0, MAX_STEPS)
        if (isinstance(self.hires_strength, bool) or not isinstance(self.hires_strength, (int, float))
                or not 0.0 < self.hires_strength <= 1.0):
            raise InvalidRequest("hires_strength", f"must be above 0 and at most 1 (got {self.hires_strength!r})")
        if not isinstance(self.upscaler, str) or not self.upscaler.strip():
            raise InvalidRequest("upscaler", f"give {PLAIN_UPSCALER} or a GAN upscaler's file or name")
        _int_range("tile", self.tile, 0, MAX_SIZE)
        _int_range("tile_overlap", self.tile_overlap, 0, MAX_SIZE // 2)
        if self.hires:
            if self.mode is not Mode.TXT2IMG:
                raise InvalidRequest("hires_scale", "the hires fix enlarges a new image: use it with text to image")
            if self.tile:
                raise InvalidRequest("tile", "tiles are for image to image; the hires fix runs in one pass")
            w, h = hires_size(self.width, self.height, scale)
            if max(w, h) > MAX_SIZE:
                raise InvalidRequest("hires_scale", f"{self.width}x{self.height} times {scale:g} is {w}x{h}, "
                                     f"larger than {MAX_SIZE} px: use a smaller factor")
        if self.tile:
            if self.mode is not Mode.IMG2IMG:
                raise InvalidRequest("tile", "tiles are for image to image (the detail upscale)")
            if self.tile < MIN_TILE or self.tile % 8:
                raise InvalidRequest("tile", f"must be 0 (one pass) or a multiple of 8 of at least {MIN_TILE} px "
                                     f"(got {self.tile})")
            if self.tile_overlap * 2 > self.tile:
                raise InvalidRequest("tile_overlap", f"must be at most half the tile ({self.tile // 2} px; "
                                     f"got {self.tile_overlap})")

    @property
    def hires(self) -> bool:
        """Whether this request runs the hires fix (two phases)."""
        return bool(self.hires_scale)

    @property
    def output_size(self) -> tuple[int, int]:
        """The size of the images the request makes (the hires fix's enlarged size, else width x height)."""
        return hires_size(self.width, self.height, self.hires_scale) if self.hires else (self.width, self.height)

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the init image and mask left out: they are not part of the recipe text;
        control images included, as base64 PNG)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("init_image", "mask", "controls", "references", "regions")}
        d["mode"] = self.mode.value
        if self.controls:  # a control image is part of the recipe: without it the image cannot be remade
            d["controls"] = [c.to_dict() for c in self.controls]
        if self.references:  # so is a reference image
            d["references"] = [r.to_dict() for r in self.references]
        if self.regions:  # and each region's mask
            d["regions"] = [r.to_dict() for r in self.regions]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], **extra: Any) -> GenerationRequest:
        """Build from ``to_dict`` output; unknown keys are ignored (forward compatible)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs.update(extra)
        return cls(**kwargs)


def _int_range(name: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidRequest(name, f"must be a whole number from {lo} to {hi} (got {value!r})")


@dataclass(frozen=True)
class UpscaleRequest:
    """A GAN upscale: ``image`` (PIL, RGB or RGBA) enlarged by the upscaler file ``model``, to ``scale``
    times its size (None: the model's own factor; another factor resamples the model's output).
    ``tile`` px tiles (0: one pass), sharing ``overlap`` px. The memory preset caps the tile size."""

    model: str
    image: Image.Image = field(compare=False, repr=False)
    scale: int | None = None
    tile: int = 512
    overlap: int = 32
    memory_preset: str = "auto"

    def __post_init__(self) -> None:
        if self.scale is not None:
            _int_range("scale", self.scale, 1, 8)
        _int_range("tile", self.tile, 0, 8192)
        if self.tile and self.tile < 32:
            raise InvalidRequest("tile", f"must be 0 (one pass) or at least 32 px (got {self.tile})")
        _int_range("overlap", self.overlap, 0, 512)
        if self.memory_preset not in MEMORY_PRESETS:
            raise InvalidRequest("memory_preset", f"must be one of {', '.join(MEMORY_PRESETS)}")


@dataclass(frozen=True)
class ModelInfo:
    """What a model file or folder is, decided from its header or model_index.json alone.

    kind: "checkpoint" | "inpaint" | "lora" | "embedding" | "vae" | "upscaler" | "unknown"
    family: "sd1" | "sd2" | "sdxl" | "amused" | "unclip" (Stable unCLIP image variations) | "flux1" | "flux2"
        (FLUX.2 [klein]) | "" (unknown)
    format: "diffusers" | "safetensors" | "gguf" (a quantized FLUX.1 transformer)
    prediction_type: "epsilon" | "v_prediction" | "flow" (flow matching: FLUX)
    variant: "" (a base model or fine-tune) | "turbo" (adversarially distilled one-step model: 1-4 steps,
        no CFG) | "amused" (VQ token transformer, family "amused") | "unclip" (Stable unCLIP: variations of an
        image from its CLIP embedding; it takes no text-to-image requests) | "dev" / "schnell" (FLUX.1
        guidance-distilled / timestep-distilled) | "distilled" / "base" with "-4b" / "-9b" when the size is
        told (FLUX.2 [klein]: 4 steps without CFG / with CFG)
    problem: None if Easel can load it as a generator, else one plain-language line saying why not.
    """

    path: str
    name: str
    kind: str
    family: str
    format: str
    prediction_type: str = "epsilon"
    size_bytes: int = 0
    problem: str | None = None
    variant: str = ""

    @property
    def usable(self) -> bool:
        return self.problem is None and self.kind in ("checkpoint", "inpaint")

    @property
    def upscaler(self) -> bool:
        """A file for Upscale (engine.upscale), not a generator."""
        return self.kind == "upscaler"

    @property
    def inpainting(self) -> bool:
        return self.kind == "inpaint"


@dataclass(frozen=True)
class RuntimeSettings:
    """The device and memory settings a job actually ran with (recorded in results and metadata)."""

    device: str
    dtype: str
    preset: str
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    model_offload: bool = False
    sequential_offload: bool = False
    # Components kept in fp8 storage (layerwise casting), computed in ``dtype``: ("transformer", ...).
    fp8_storage: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def precision(self) -> str:
        """The precision in words: "bfloat16", or "bfloat16, fp8 storage (transformer)"."""
        return f"{self.dtype}, fp8 storage ({', '.join(self.fp8_storage)})" if self.fp8_storage else self.dtype


@dataclass(frozen=True)
class Progress:
    """One denoising step done. ``preview`` is a small RGB image every few steps, else None.

    ``image_index``/``batch_count`` place the step within a batch (images run one after another).
    ``stage``/``stages``/``stage_name`` place it within a multi-stage job (a cascade such as DeepFloyd
    IF runs "Stage I 64 px", "Stage II 256 px", "Upscale x4" as one job); ``step``/``total`` then count
    the steps of the current stage. A single-stage job is stage 1 of 1 with no name.
    """

    step: int
    total: int
    elapsed: float
    image_index: int = 0
    batch_count: int = 1
    preview: Image.Image | None = field(default=None, compare=False, repr=False)
    stage: int = 1
    stages: int = 1
    stage_name: str = ""


@dataclass(frozen=True)
class Timings:
    """Seconds spent per phase, summed over the batch."""

    load: float = 0.0
    encode: float = 0.0
    denoise: float = 0.0
    decode: float = 0.0
    total: float = 0.0


@dataclass(frozen=True)
class MemoryUse:
    """Memory a job took on its device, in bytes: ``before`` held when it started (the model and, on the
    CPU, the whole process), ``peak`` the most at any moment of the job, ``total`` the device's size
    (system RAM for the CPU, the card's memory for a GPU)."""

    before: int
    peak: int
    total: int


@dataclass(frozen=True)
class Result:
    """A finished job. ``request`` is the request as run (seed resolved), ``seeds[i]`` made ``images[i]``."""

    images: tuple[Image.Image, ...] = field(repr=False)
    seeds: tuple[int, ...]
    request: GenerationRequest
    model: ModelInfo
    model_hash: str
    settings: RuntimeSettings
    timings: Timings
    # What the A1111 line records beyond the request: ("Lora hashes", '"name: 0123456789ab"'),
    # ("Clip skip", "2"), ("VAE", "name"), ("VAE hash", ...), in that order.
    params: tuple[tuple[str, str], ...] = ()
    # Plain-language lines about what the engine did on its own (a lower memory preset after running
    # out of memory, the VAE rerun in fp32, a LoRA of another family skipped). The window shows them.
    notices: tuple[str, ...] = ()
    # False for a model with its own schedule (aMUSEd, DeepFloyd IF): no Sampler is recorded.
    uses_sampler: bool = True
    # What the job took in memory (None where the device cannot tell): the window's estimate before a big job.
    memory: MemoryUse | None = None

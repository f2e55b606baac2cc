"""GAN super-resolution upscalers (ESRGAN, Real-ESRGAN, SwinIR, ...), loaded with spandrel, run tiled.

Weights are read without running code: ``.safetensors`` through safetensors, ``.pth`` only through
torch's weights-only unpickler (``torch.load(weights_only=True)``, which refuses anything but tensors
and plain containers). spandrel's own ``load_from_file`` is never used: for ``.pt`` it loads
TorchScript, which is code. spandrel then recognises the architecture from the tensor names/shapes.

Tiling keeps memory bounded: the image is cut into ``tile``-pixel squares that overlap by
``overlap`` pixels, each is upscaled alone, and the overlaps are cross-faded into one uint8 output
buffer, so peak memory is the output image plus one tile's activations, whatever the image size.

Every function here runs on the calling thread (the app's engine thread, or the CLI's main thread).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.api import EaselError, ImageError, ModelError, UnsafeModelFile, UnsupportedModel
from engine.core.decode import check_pixels
from engine.files.probe import model_hash, read_header, sniff

log = logging.getLogger(__name__)

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
MIN_TILE = 32
MAX_INPUT_PIXELS = 8192 * 8192
UPSCALE_KEY = "easel_upscale"
POSTPROCESSING_KEY = "postprocessing"  # the chunk A1111's Extras tab writes

_PTH_FORMATS = ("pickle", "torch-zip")


@dataclass(frozen=True)
class Upscaler:
    """A loaded upscaling model. ``model`` is spandrel's ImageModelDescriptor (on ``device``)."""

    path: str
    name: str
    architecture: str
    scale: int
    hash: str
    model: object = field(repr=False, compare=False)
    multiple_of: int = 1
    minimum: int = 1


@dataclass(frozen=True)
class UpscaleResult:
    """An upscaled image and how it was made (written into the PNG by ``save_upscaled``)."""

    image: object = field(repr=False)  # PIL.Image.Image
    source_size: tuple[int, int] = (0, 0)
    scale: int = 1
    model_name: str = ""
    model_hash: str = ""
    architecture: str = ""
    tile: int = 0  # 0 = one pass over the whole image
    overlap: int = 0
    seconds: float = 0.0

    def recipe(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("image")
        d["source_size"] = list(self.source_size)
        return d


# ------------------------------------------------------------------------------------ loading


def import_spandrel():
    """Import spandrel without torchvision.

    spandrel imports every architecture it knows at import time; two of them (LaMa, RestoreFormer,
    neither an upscaler) import ``torchvision.transforms.functional`` helpers that they only call
    while running. Easel ships no torchvision (it would pin a second large CUDA/CPU wheel next to
    torch), so while spandrel is imported, and only then, a placeholder module stands in for it
    whose functions raise a plain error if ever called. The placeholder is removed right after, so
    no other library sees a fake torchvision. Runs on the calling thread.
    """
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    try:
        import torchvision  # noqa: F401  (a real one, if the user has it, is used as is)
    except ImportError:
        pass
    else:
        import spandrel

        return spandrel

    class _Missing(types.ModuleType):
        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)

            def unavailable(*_args, **_kwargs):
                raise UnsupportedModel(name, "this model architecture needs torchvision, which Easel does not ship")

            return unavailable

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    added = [n for n in names if n not in sys.modules]
    for n in added:
        sys.modules[n] = _Missing(n)
    try:
        import spandrel
    except ImportError:
        raise EaselError("GAN upscaling needs the spandrel package: pip install --no-deps spandrel==0.4.2") from None
    finally:
        for n in added:
            sys.modules.pop(n, None)
    return spandrel


def read_state_dict(path: str) -> dict:
    """The tensors of an upscaler file, read without executing anything it contains.

    ``.safetensors``: the header is validated first (engine.files.probe). Pickle-based ``.pth``
    files: torch's weights-only unpickler, which accepts only tensors and plain containers and
    raises on anything else (a class, a function, a reduce call). Raises ModelError with one line.
    """
    import torch

    fmt = sniff(path)
    if fmt == "safetensors":
        read_header(path)
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    if fmt in _PTH_FORMATS:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=fmt == "torch-zip")
        except Exception as exc:  # noqa: BLE001 - the weights-only unpickler refused or the file is damaged
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UnsafeModelFile(path, "this .pth file holds more than plain weights (or is damaged), so it "
                                  f"was not opened; use a .safetensors version ({first})") from None
        for key in ("params_ema", "params", "state_dict", "model", "net_g"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ModelError(path, "this .pth file does not hold a model's weights")
        return obj
    read_header(path)  # raises the plain-language reason (empty, LFS pointer, HTML page, ...)
    raise ModelError(path, "not an upscaler weights file")


def load_upscaler(path: str, device: str = "cpu") -> Upscaler:
    """Load an upscaling model (any architecture spandrel knows) from ``path``.

    Raises ModelError / UnsupportedModel / UnsafeModelFile with one plain-language line.
    Runs on the calling thread (the engine thread in the app).
    """
    p = Path(path).expanduser()
    spath = str(p)
    if p.is_dir():
        raise ModelError(spath, "an upscaler is a single .safetensors or .pth file, not a folder")
    if not p.is_file():
        raise ModelError(spath, "not found")
    state = read_state_dict(spath)
    spandrel = import_spandrel()
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise UnsupportedModel(spath, "not an upscaler architecture Easel (spandrel) recognises") from None
    except (KeyError, ValueError, RuntimeError, TypeError, AssertionError) as exc:
        raise ModelError(spath, f"the upscaler's weights do not fit its architecture ({type(exc).__name__})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UnsupportedModel(spath, f"{descriptor.architecture.name} is not an upscaler (it needs a mask)")
    if descriptor.scale < 1:
        raise UnsupportedModel(spath, f"{descriptor.architecture.name} does not enlarge images")
    descriptor.to(device).eval()
    req = descriptor.size_requirements
    return Upscaler(
        path=spath, name=p.stem, architecture=descriptor.architecture.name, scale=int(descriptor.scale),
        hash=model_hash(spath), model=descriptor, multiple_of=max(1, req.multiple_of), minimum=max(1, req.minimum),
    )


def upscale_image(upscaler: Upscaler, image, tile: int | None = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                  report: Callable[[int, int], None] | None = None) -> UpscaleResult:
    """Upscale a PIL image by the model's scale; ``tile=None`` or 0 runs one pass over the whole image.

    Memory: one uint8 output buffer plus one tile's activations. ``report(done, total)`` after each
    tile (it may raise Cancelled: the job's cancel check). Alpha is upscaled by resampling (the
    models see RGB). Runs on the calling thread (the engine thread).
    """
    import numpy as np
    import torch
    from PIL import Image

    from engine.core.tiles import run_tiled

    started = time.perf_counter()
    w, h = image.size
    if w * h > MAX_INPUT_PIXELS:
        raise ImageError(f"the image is {w}x{h}: too large to upscale (at most {MAX_INPUT_PIXELS:,} pixels)")
    if w < upscaler.minimum or h < upscaler.minimum:
        raise ImageError(f"the image is {w}x{h}: too small for this upscaler (at least {upscaler.minimum} px)")
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    rgb = np.asarray(image.convert("RGB"))
    s = upscaler.scale
    tiled = bool(tile) and tile < max(w, h)
    tile = max(MIN_TILE, int(tile)) if tiled else max(w, h)
    overlap = max(0, min(int(overlap), tile // 2)) if tiled else 0
    model = upscaler.model
    device = next(iter(model.model.parameters())).device if hasattr(model, "model") else torch.device("cpu")

    def run_tile(_index, x, y, tw, th):
        return _run_tile(model, rgb[y:y + th, x:x + tw], upscaler.multiple_of, device)

    with torch.inference_mode():
        out = run_tiled(w, h, s, tile, overlap, run_tile,
                        (lambda done, total, _out, _rows: report(done, total)) if report else None)
    result = Image.fromarray(out, "RGB")
    if alpha is not None:
        result.putalpha(alpha.resize(result.size, Image.Resampling.LANCZOS))
    return UpscaleResult(
        image=result, source_size=(w, h), scale=s, model_name=upscaler.name, model_hash=upscaler.hash,
        architecture=upscaler.architecture, tile=tile if tiled else 0, overlap=overlap,
        seconds=time.perf_counter() - started,
    )


def _run_tile(model, pixels, multiple_of: int, device):
    """One tile through the model: uint8 HxWx3 in, float32 (H*s)x(W*s)x3 in 0..255 out."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    h, w = pixels.shape[:2]
    t = torch.from_numpy(np.array(pixels, copy=True)).to(device).permute(2, 0, 1)[None].float() / 255.0
    pad_h, pad_w = -h % multiple_of, -w % multiple_of
    if pad_h or pad_w:
        t = F.pad(t, (0, pad_w, 0, pad_h), mode="replicate")
    y = model(t)
    s = y.shape[-1] // t.shape[-1]
    y = y[..., : h * s, : w * s]
    check_pixels(y, "the upscaler", black=False)  # NaN (fp16 overflow) would be a silent black tile
    return (y[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255.0)


# ------------------------------------------------------------------------------------ saving


def save_upscaled(result: UpscaleResult, source_texts: dict[str, str], target: Path, *, embed: bool = True) -> Path:
    """Write the upscaled PNG atomically. The source's generation settings are kept (as A1111 Extras
    does) and how it was upscaled is added: a ``postprocessing`` line and an ``easel_upscale`` JSON."""
    from PIL.PngImagePlugin import PngInfo

    from engine.outputs import write_png_atomic

    info = PngInfo()
    if embed:
        for key, value in source_texts.items():
            if key not in (UPSCALE_KEY, POSTPROCESSING_KEY):
                info.add_itxt(key, value)
        info.add_text(POSTPROCESSING_KEY, postprocessing_line(result))
        info.add_itxt(UPSCALE_KEY, json.dumps(result.recipe(), ensure_ascii=False))
    try:
        return write_png_atomic(Path(target), result.image, info)
    except OSError as exc:
        from engine.api import EaselError

        raise EaselError(f"could not save {target}: {exc.strerror or exc}") from exc


def postprocessing_line(result: UpscaleResult) -> str:
    """A1111 Extras' wording: ``Postprocess upscale by: 4, Postprocess upscaler: name``."""
    line = f"Postprocess upscale by: {result.scale}, Postprocess upscaler: {result.model_name}"
    if result.model_hash:
        line += f", Postprocess upscaler hash: {result.model_hash}"
    return line


def inspect_upscaler(path: str):
    """A ModelInfo for a file offered to Upscale, from its header alone; ``problem`` says why it cannot
    upscale. ``.pth`` files cannot be judged without reading them (weights-only) and are listed as
    upscalers to try. Any thread."""
    from engine.api import ModelInfo
    from engine.files.probe import inspect_model

    info = inspect_model(path)
    if info.kind == "upscaler":
        return dataclasses.replace(info, problem=None)
    if info.format in _PTH_FORMATS and Path(path).suffix.lower() == ".pth":
        return ModelInfo(info.path, info.name, "upscaler", "", "pth", size_bytes=info.size_bytes)
    return dataclasses.replace(info, problem=info.problem or "not an upscaler")

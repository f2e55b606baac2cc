"""GAN upscale jobs as the engine thread runs them: what a job is (UpscaleSpec), what it gives back
(UpscaleOutcome), the loaded-upscaler cache and the default saver. The bridge submits this work to its
engine thread; nothing here starts a thread or touches Qt widgets."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.api import Cancelled, EaselError, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpscaleSpec:
    """A GAN upscale job: ``image`` (PIL, RGB or RGBA) enlarged ``scale`` times with the upscaler file
    ``model``; ``tile`` px tiles (0 = one pass). ``source_texts`` are the source's PNG text chunks,
    kept in the result (as A1111's Extras tab does)."""

    image: Any = field(repr=False)
    model: str
    scale: int
    tile: int
    source_name: str
    model_name: str = ""
    source_texts: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass
class UpscaleOutcome:
    """A finished upscale: ``result`` (engine.upscale.UpscaleResult), what the saver returned
    (``saved``, a gallery entry) and the file ``path``; ``image``/``before`` are QImage copies."""

    result: Any
    saved: Any
    path: Path
    image: Any  # QImage
    before: Any  # QImage
    seconds: float = 0.0

    @property
    def paths(self) -> list[Path]:
        return [self.path]


def default_upscale_saver(result: Any, texts: dict[str, str], folder: Path, embed: bool = True) -> Path:
    """Engine thread: write an upscaled PNG into ``folder`` under a new name, keeping the source's settings."""
    from engine.outputs import safe_stem
    from engine.upscale import save_upscaled

    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_stem(result.model_name)}-x{result.scale}"
    target = Path(folder) / f"{stem}.png"
    n = 2
    while target.exists():
        target = Path(folder) / f"{stem}-{n}.png"
        n += 1
    return save_upscaled(result, texts, target, embed=embed)


class UpscalerRunner:
    """Keeps the last upscaler loaded (a second upscale with it skips the load). Engine thread only."""

    def __init__(self):
        self._held: tuple[tuple[str, int], Any] | None = None

    def unload(self) -> None:
        self._held = None

    def run(self, spec: UpscaleSpec, device: str, cancel: threading.Event, on_progress: Callable[[Progress], None],
            phase: Callable[[str], None], save: Callable[[Any], Any]) -> tuple[Any, Any]:
        """Load (or reuse) the upscaler, upscale ``spec.image`` tile by tile, resample to the asked scale,
        save. Raises Cancelled (nothing saved) or an EaselError with one plain line. Engine thread."""
        from PIL import Image

        from engine.upscale import load_upscaler, upscale_image

        key = (str(Path(spec.model).expanduser().resolve()), _mtime(spec.model))
        if self._held is None or self._held[0] != key:
            phase(f"Loading upscaler {Path(spec.model).name}…")
            self._held = None
            try:
                upscaler = load_upscaler(spec.model, device=device)
            except EaselError:
                raise
            except Exception:  # a device the upscaler cannot use: fall back to the CPU
                log.exception("loading the upscaler on %s failed; using the CPU", device)
                upscaler = load_upscaler(spec.model, device="cpu")
            self._held = (key, upscaler)
        upscaler = self._held[1]
        phase(f"Upscaling with {upscaler.name}…")
        result = upscale_image(upscaler, spec.image, tile=spec.tile or None, on_progress=on_progress, cancel=cancel)
        if spec.scale != result.scale:  # a x4 model asked for x2 (or the reverse): resample its output
            w, h = result.source_size
            image = result.image.resize((w * spec.scale, h * spec.scale), Image.Resampling.LANCZOS)
            result = dataclasses.replace(result, image=image, scale=spec.scale)
        if cancel.is_set():  # cancelled after the last tile: leave nothing behind
            raise Cancelled(1, 1)
        phase("Saving…")
        return result, save(result)


def _mtime(path: str) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0

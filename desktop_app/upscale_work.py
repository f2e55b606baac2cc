"""GAN upscale jobs as the engine thread runs them: what a job is (UpscaleSpec), what it gives back
(UpscaleOutcome), the run through the Engine and the default saver. The bridge submits this work to its
engine thread; nothing here starts a thread or touches Qt widgets."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.api import Progress

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


def run_upscale(engine: Any, spec: UpscaleSpec, cancel: threading.Event, on_progress: Callable[[Progress], None],
                phase: Callable[[str], None], save: Callable[[Any], Any]) -> tuple[Any, Any]:
    """Upscale ``spec.image`` through the Engine (which keeps the upscaler loaded for the next job, as
    it keeps any model), then save. Raises Cancelled (nothing saved) or an EaselError with one plain
    line. Engine thread."""
    from engine.api import UpscaleRequest

    phase(f"Upscaling with {Path(spec.model).stem}…")
    request = UpscaleRequest(model=spec.model, image=spec.image, scale=spec.scale, tile=spec.tile)
    result = engine.upscale(request, on_progress, cancel)
    phase("Saving…")
    return result, save(result)

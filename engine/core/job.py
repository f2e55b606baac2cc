"""One job on its way through a runner: the request (seed resolved), where progress goes, the cancel
token, the notices the result will carry. Runners take a Job instead of a row of positional
arguments; every family reports and cancels through the same two methods here.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.api import Cancelled, GenerationRequest, Progress, batch_seed


@dataclass
class Job:
    """What a runner needs besides its model. Created by ``Engine.generate`` on the engine thread."""

    request: GenerationRequest
    on_progress: Callable[[Progress], None] | None = None
    cancel: threading.Event | None = None
    started: float = field(default_factory=time.perf_counter)
    model_hash: str = ""
    notices: list[str] = field(default_factory=list)
    preview_every: int = 2  # a preview image every that many steps (and on the last)
    noise: object = None  # an engine.core.noise.NoiseWindow: the tile's slice of the image's one noise field
    # The hires fix's latent upscale (runners whose caps declare ``latent_upscale``): a list here is filled
    # with each image's denoised latents; ``init_latents`` starts an img2img from those (enlarged) latents.
    latents: list | None = None
    init_latents: object = None

    def check_cancel(self, step: int = 0, total: int | None = None) -> None:
        """Raise Cancelled when the token is set. Engine thread (or whichever runs the job)."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(step, getattr(self.request, "steps", 0) if total is None else total)

    def report(self, step: int, total: int, index: int = 0, preview=None, stage: int = 1, stages: int = 1,
               stage_name: str = "") -> None:
        """One step done: a Progress event to the listener, then the cancel check (so a cancel set
        while the listener ran is seen at once)."""
        if self.on_progress is not None:
            self.on_progress(Progress(step=step, total=total, elapsed=time.perf_counter() - self.started,
                                      image_index=index, batch_count=getattr(self.request, "batch_count", 1), preview=preview,
                                      stage=stage, stages=stages, stage_name=stage_name))
        self.check_cancel(step, total)

    def seed(self, index: int) -> int:
        """Image ``index`` of the batch uses seed + index (A1111's rule), wrapped into the seed range."""
        return batch_seed(self.request.seed, index)

    def phase(self, request, stage: int, stages: int, stage_name: str, index: int | None = None,
              noise=None) -> Job:
        """A job for one phase of this one (the hires fix's passes, a tile of a detail upscale): ``request``
        runs with this job's cancel token, notices and model hash, and its progress reaches this job's
        listener as stage ``stage`` of ``stages`` named ``stage_name`` (image ``index`` of the batch when
        given); ``noise``: the tile's window of the image's noise field (engine.core.noise). Engine thread."""
        listener = self.on_progress

        def relay(progress: Progress) -> None:
            listener(dataclasses.replace(
                progress, stage=stage, stages=stages, stage_name=stage_name,
                image_index=progress.image_index if index is None else index,
                batch_count=getattr(self.request, "batch_count", 1), elapsed=time.perf_counter() - self.started))

        child = Job(request, relay if listener is not None else None, self.cancel, started=time.perf_counter(),
                    model_hash=self.model_hash, preview_every=self.preview_every, noise=noise)
        child.notices = self.notices  # one list: what a phase notices, the whole job's result says
        return child

    def notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)

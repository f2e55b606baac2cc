"""The one step callback: progress, previews and cancel for every family, in both of diffusers'
callback styles, plus a cancel check *inside* a step (between the denoiser's blocks).

Cancel is a token checked here, never the pipeline's interrupt flag: that flag skips the remaining
steps but still decodes and returns a half-denoised image. Everything here runs on the engine thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from engine.api import Cancelled
from engine.core.job import Job

class StepReporter:
    """Reports the steps of one image (of one stage) of a job.

    ``preview(latents) -> PIL image | None`` makes the preview attached every ``every`` steps (default:
    the job's ``preview_every``) and on the last one. Use ``on_step_end`` as diffusers' ``callback_on_step_end`` or ``legacy`` as its older
    ``callback=`` (with ``callback_steps=1``); a family with its own loop calls the reporter directly.
    """

    def __init__(self, job: Job, index: int = 0, total: int | None = None, preview: Callable | None = None,
                 every: int | None = None, stage: int = 1, stages: int = 1, stage_name: str = ""):
        self.job = job
        self.index = index
        self.total = job.request.steps if total is None else total
        self.preview = preview if job.on_progress is not None else None
        self.every = max(1, job.preview_every if every is None else every)
        self.stage, self.stages, self.stage_name = stage, stages, stage_name
        self.step = 0

    def __call__(self, step: int, latents=None, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.step = step
        image = None
        if self.preview is not None and latents is not None and (step % self.every == 0 or step == self.total):
            image = self.preview(latents)
        self.job.report(step, self.total, self.index, image, self.stage, self.stages, self.stage_name)

    def on_step_end(self, pipe, i: int, _t, kwargs: dict) -> dict:
        # img2img and inpaint run fewer steps than asked (strength): the pipeline knows how many.
        self(i + 1, kwargs.get("latents"), getattr(pipe, "num_timesteps", None) or self.total)
        return kwargs

    def legacy(self, i: int, _t, latents) -> None:
        self(i + 1, latents)

    def check(self) -> None:
        """The cancel check between two blocks of one step."""
        if self.job.cancel is not None and self.job.cancel.is_set():
            raise Cancelled(self.step, self.total)


def _blocks(denoiser) -> list:
    """Every submodule of the denoiser: the cancel is looked at before each one runs (a few hundred
    cheap checks a step), so a huge step stops at its next layer. One single operation (a giant
    attention product) still runs to its end: a quit does not wait for it (desktop_app.bridge)."""
    return [m for m in denoiser.modules() if m is not denoiser]


@contextlib.contextmanager
def cancel_within_steps(denoisers, reporter: StepReporter | Job) -> Iterator[None]:
    """While inside, setting the job's cancel token stops a running step at the next layer of the
    ``denoisers`` (a huge step on a CPU can take minutes). ``reporter``: the StepReporter whose step
    count the Cancelled error names, or the Job itself for loops without one."""
    job = reporter.job if isinstance(reporter, StepReporter) else reporter
    if job.cancel is None:
        yield
        return

    def check(_module, _args):
        if job.cancel.is_set():
            if isinstance(reporter, StepReporter):
                raise Cancelled(reporter.step, reporter.total)
            job.check_cancel()

    handles = []
    try:
        for denoiser in denoisers:
            if denoiser is not None:
                handles.extend(block.register_forward_pre_hook(check) for block in _blocks(denoiser))
        yield
    finally:
        for handle in handles:
            handle.remove()

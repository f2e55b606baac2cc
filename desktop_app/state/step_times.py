"""How fast this computer denoises, measured from finished jobs, to warn before a job that takes long.

Kept per device ("cpu", "cuda:0", ...) as seconds per denoising step per megapixel, in
<data>/step_times.json: each finished job's ``Result.timings.denoise`` moves the figure (a running
average that follows the newest jobs, as a model or driver change can change the speed). Nothing is
guessed for a device that has not finished a job yet. GUI thread.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from engine.api import GenerationRequest, Mode, Result
from engine.outputs import write_text_atomic

log = logging.getLogger(__name__)

NEWEST_WEIGHT = 0.5  # how much the newest job moves the figure
LONG_JOB_SECONDS = 10 * 60  # a job estimated longer than this asks first


def denoise_steps(request: GenerationRequest) -> int:
    """The denoising steps a request runs over its whole batch (img2img runs steps × strength)."""
    steps = request.steps
    if request.mode in (Mode.IMG2IMG, Mode.INPAINT):
        steps = max(1, int(steps * request.strength))
    return steps * request.batch_count


def megapixels(request: GenerationRequest) -> float:
    return request.width * request.height / 1e6


class StepTimes:
    """Measured seconds per step per megapixel, by device."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._rates: dict[str, float] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._rates = {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:  # a damaged file: start measuring again
            log.warning("step times %s unreadable (%s); measuring again", self.path, exc)

    def rate(self, device: str) -> float | None:
        return self._rates.get(device)

    def record(self, result: Result) -> None:
        """Fold a finished job's denoising time into its device's figure and save it."""
        seconds, request = result.timings.denoise, result.request
        work = denoise_steps(request) * megapixels(request)
        device = str(result.settings.device or "")
        if seconds <= 0 or work <= 0 or not device:
            return
        measured = seconds / work
        old = self._rates.get(device)
        self._rates[device] = measured if old is None else old + NEWEST_WEIGHT * (measured - old)
        try:
            write_text_atomic(self.path, json.dumps(self._rates, indent=1, sort_keys=True))
        except OSError as exc:
            log.warning("could not save step times: %s", exc)

    def estimate(self, request: GenerationRequest, device: str) -> float | None:
        """Seconds the denoising of ``request`` should take on ``device`` (None: not measured yet)."""
        rate = self.rate(device)
        return None if rate is None else rate * denoise_steps(request) * megapixels(request)

    def warning(self, request: GenerationRequest, device: str) -> str | None:
        """One line when the job will take very long here, else None."""
        seconds = self.estimate(request, device)
        if seconds is None or seconds < LONG_JOB_SECONDS:
            return None
        return f"This will take about {_duration(seconds)} on this {_device_name(device)}; continue?"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    hours = seconds / 3600
    return f"{hours:.1f} hours" if hours < 10 else f"{round(hours)} hours"


def _device_name(device: str) -> str:
    kind = device.split(":")[0]
    return {"cpu": "CPU", "cuda": "GPU", "mps": "Mac GPU", "xpu": "GPU"}.get(kind, device)

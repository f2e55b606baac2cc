"""How fast this computer denoises and how much memory a job takes, measured from finished jobs, to
warn before a job that would take very long or not fit.

Kept per device ("cpu", "cuda:0", ...) in <data>/step_times.json: seconds per denoising step per
megapixel (from each finished job's ``Result.timings.denoise``), and memory: what was held when the
newest job started, the bytes a megapixel of image adds at the job's peak, and the device's size (from
``Result.memory``). Each job moves the figures (a running average that follows the newest jobs, as a
model or driver change can change them). Images of a batch run one after another, so the batch size
does not add memory. Nothing is guessed for a device that has not finished a job yet. GUI thread.
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
MEMORY_SHARE = 0.9  # a job estimated to need more than this share of the device's memory asks first


def denoise_steps(request: GenerationRequest) -> int:
    """The denoising steps a request runs over its whole batch (img2img runs steps × strength)."""
    steps = request.steps
    if request.mode in (Mode.IMG2IMG, Mode.INPAINT):
        steps = max(1, int(steps * request.strength))
    return steps * request.batch_count


def megapixels(request: GenerationRequest) -> float:
    return request.width * request.height / 1e6


def work(request: GenerationRequest) -> float:
    """Denoising steps × megapixels over the whole job: the hires fix adds its second pass at the large size."""
    total = denoise_steps(request) * megapixels(request)
    if request.hires:
        width, height = request.output_size
        second = max(1, int((request.hires_steps or request.steps) * request.hires_strength))
        total += second * request.batch_count * width * height / 1e6
    return total


def peak_megapixels(request: GenerationRequest) -> float:
    """The most image denoised or decoded at once: the hires fix's large size; one tile of a tiled job."""
    width, height = request.output_size
    if request.tile:
        width, height = min(width, request.tile), min(height, request.tile)
    return width * height / 1e6


class StepTimes:
    """Measured seconds per step per megapixel, by device."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._rates: dict[str, float] = {}
        # device -> {"held": bytes, "per_megapixel": bytes, "total": bytes}
        self._memory: dict[str, dict[str, float]] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._rates = {str(k): float(v) for k, v in data.items() if _positive(v)}
            self._memory = {str(k): {n: float(v[n]) for n in ("held", "per_megapixel", "total")}
                            for k, v in (data.get("memory") or {}).items()
                            if isinstance(v, dict) and all(_positive(v.get(n)) for n in ("held", "total"))
                            and isinstance(v.get("per_megapixel"), (int, float))}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, TypeError) as exc:  # a damaged file: start measuring again
            log.warning("step times %s unreadable (%s); measuring again", self.path, exc)

    def rate(self, device: str) -> float | None:
        return self._rates.get(device)

    def record(self, result: Result) -> None:
        """Fold a finished job's denoising time into its device's figure and save it."""
        seconds, request = result.timings.denoise, result.request
        done = work(request)
        device = str(result.settings.device or "")
        if seconds <= 0 or done <= 0 or not device:
            return
        self._rates[device] = _moved(self._rates.get(device), seconds / done)
        use = result.memory
        if use is not None and use.total > 0 and use.before > 0 and peak_megapixels(request) > 0:
            old = self._memory.get(device, {})
            added = max(0, use.peak - use.before) / peak_megapixels(request)
            self._memory[device] = {"held": float(use.before), "total": float(use.total),
                                    "per_megapixel": _moved(old.get("per_megapixel"), added)}
        try:
            write_text_atomic(self.path, json.dumps({**self._rates, "memory": self._memory}, indent=1, sort_keys=True))
        except OSError as exc:
            log.warning("could not save step times: %s", exc)

    def estimate(self, request: GenerationRequest, device: str) -> float | None:
        """Seconds the denoising of ``request`` should take on ``device`` (None: not measured yet)."""
        rate = self.rate(device)
        return None if rate is None else rate * work(request)

    def memory_estimate(self, request: GenerationRequest, device: str) -> tuple[float, float] | None:
        """(bytes the job should need at its peak, the device's bytes) on ``device``; None: not measured yet."""
        m = self._memory.get(device)
        if m is None:
            return None
        return m["held"] + m["per_megapixel"] * peak_megapixels(request), m["total"]

    def warning(self, request: GenerationRequest, device: str) -> str | None:
        """One line (a question) when the job will take very long here or need more memory than the
        device has, else None."""
        seconds = self.estimate(request, device)
        long = seconds is not None and seconds >= LONG_JOB_SECONDS
        need, total = self.memory_estimate(request, device) or (0.0, 0.0)
        over = total > 0 and need > MEMORY_SHARE * total
        where = _device_name(device)
        has = f"this computer has {_gb(total)}" if where == "CPU" else f"this {where} has {_gb(total)}"
        if long and over:
            return (f"This will take about {_duration(seconds)} on this {where} and need about {_gb(need)} of memory, "
                    f"but {has}; continue?")
        if over:
            return f"This needs about {_gb(need)} of memory, but {has}: it may fail or be very slow; continue?"
        if long:
            return f"This will take about {_duration(seconds)} on this {where}; continue?"
        return None

    @staticmethod
    def declined(warning: str) -> str:
        """The status line after the user said no to ``warning``."""
        line = warning.removesuffix("; continue?").replace("This will", "it would").replace("This needs", "it needs")
        quicker = "A smaller size needs less memory." if "memory" in line else "A smaller size or fewer steps is quicker."
        return f"Not started: {line}. {quicker}"


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _moved(old: float | None, measured: float) -> float:
    return measured if old is None else old + NEWEST_WEIGHT * (measured - old)


def _gb(nbytes: float) -> str:
    gb = nbytes / 1e9
    return f"{gb:.1f} GB" if gb < 10 else f"{round(gb)} GB"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    hours = seconds / 3600
    return f"{hours:.1f} hours" if hours < 10 else f"{round(hours)} hours"


def _device_name(device: str) -> str:
    kind = device.split(":")[0]
    return {"cpu": "CPU", "cuda": "GPU", "mps": "Mac GPU", "xpu": "GPU"}.get(kind, device)

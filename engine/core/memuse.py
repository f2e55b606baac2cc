"""How much memory a job takes on its device, measured while it runs, so that the window can tell
before a bigger job whether it will fit ("needs about 31 GB; this computer has 24 GB").

CUDA: torch's allocator (its peak is reset when the job starts). CPU on Linux: the kernel's own peak of
the process's resident memory (``VmHWM``), reset when the job starts through ``/proc/self/clear_refs``,
so nothing runs beside the job. CPU elsewhere: the resident memory sampled every 20 ms by a small daemon
thread (the decode's large buffers, the usual peak, live far longer than that). MPS: the Metal
driver's allocation, sampled the same way. Engine thread.
"""

from __future__ import annotations

import logging
import re
import threading

from engine.api import MemoryUse

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.02
_STATUS, _CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"


def _kernel_peak_rss() -> int | None:
    """This process's peak resident memory in bytes since the last reset (Linux's VmHWM), or None."""
    try:
        with open(_STATUS) as f:
            found = re.search(r"^VmHWM:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _reset_kernel_peak() -> bool:
    """Start Linux's peak-RSS count afresh (writing 5 to clear_refs resets VmHWM); False where it cannot."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    return _kernel_peak_rss() is not None


class PeakMeter:
    """``with PeakMeter(device) as meter: run()`` then ``meter.use`` is a MemoryUse (None where the
    device's memory cannot be read)."""

    def __init__(self, device: str):
        self.device = str(device)
        self.use: MemoryUse | None = None
        self._read = None
        self._read_peak = None
        self._total = 0
        self._before = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMeter:
        try:
            self._start()
        except Exception as exc:  # measuring must never stop a job
            log.debug("memory of %s cannot be measured: %s", self.device, exc)
            self._read = None
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._read is None:
            return
        try:
            peak = max(self._peak, self._read_peak())
        except Exception as exc:
            log.debug("memory of %s cannot be measured: %s", self.device, exc)
            return
        self.use = MemoryUse(before=self._before, peak=peak, total=self._total)

    def _start(self) -> None:
        import torch

        kind = self.device.split(":")[0]
        if kind == "cuda":
            dev = torch.device(self.device)
            torch.cuda.reset_peak_memory_stats(dev)
            self._read = lambda: torch.cuda.memory_allocated(dev)
            self._read_peak = lambda: torch.cuda.max_memory_allocated(dev)
            self._total = int(torch.cuda.mem_get_info(dev)[1])
            self._before = self._peak = int(self._read())
            return
        import psutil

        if kind == "mps":
            self._read = torch.mps.driver_allocated_memory
            self._total = int(torch.mps.recommended_max_memory())
        elif kind == "cpu":
            process = psutil.Process()
            self._read = lambda: process.memory_info().rss
            self._total = int(psutil.virtual_memory().total)
            if _reset_kernel_peak():  # Linux keeps the peak itself: no sampling thread beside the job
                self._before = self._peak = int(self._read())
                self._read_peak = lambda: max(_kernel_peak_rss() or 0, int(self._read()))
                return
        else:
            return
        self._read_peak = self._read
        self._before = self._peak = int(self._read())
        self._thread = threading.Thread(target=self._sample, name="easel-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self._peak = max(self._peak, int(self._read()))
            except Exception:  # the process is going away
                return

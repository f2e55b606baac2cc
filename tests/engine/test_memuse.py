"""The memory a job takes (engine.core.memuse): what the window's "needs about N GB" estimate is built on."""

from __future__ import annotations

import sys
import threading

import pytest

from engine.core import memuse


def _hold(nbytes: int) -> None:
    block = bytearray(nbytes)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page: resident, not just reserved
    del block


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's VmHWM")
def test_cpu_peak_on_linux_is_the_kernels_and_runs_no_thread_beside_the_job():
    threads = threading.active_count()
    with memuse.PeakMeter("cpu") as meter:
        assert threading.active_count() == threads  # nothing sampling beside the job
        _hold(200 * 2**20)  # 200 MB held briefly, then freed
    use = meter.use
    assert use is not None and 0 < use.before < use.total
    assert use.peak - use.before >= 190 * 2**20  # the freed block still counts: it was the peak


def test_cpu_peak_by_sampling_where_the_kernel_keeps_none(monkeypatch):
    monkeypatch.setattr(memuse, "_reset_kernel_peak", lambda: False)
    import time

    with memuse.PeakMeter("cpu") as meter:
        block = bytearray(200 * 2**20)
        block[::4096] = b"\x01" * len(block[::4096])
        deadline = time.monotonic() + 60
        while meter._peak - meter._before < 190 * 2**20 and time.monotonic() < deadline:
            time.sleep(memuse.SAMPLE_SECONDS)  # until the sampling thread has seen the block
        del block
    use = meter.use
    assert use is not None and use.peak - use.before >= 190 * 2**20


def test_a_second_job_does_not_inherit_the_first_ones_peak():
    with memuse.PeakMeter("cpu") as first:
        _hold(300 * 2**20)
    with memuse.PeakMeter("cpu") as second:
        pass
    assert first.use.peak - first.use.before >= 290 * 2**20
    assert second.use.peak - second.use.before < 100 * 2**20

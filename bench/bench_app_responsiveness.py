"""GUI responsiveness and cancel latency with the real engine and a tiny model, on this machine.

A 5 ms heartbeat QTimer on the GUI thread records the gaps between its ticks while:
  1. the engine thread imports torch + diffusers and creates the Engine (start-up),
  2. a generation runs, including the first model load,
  3. a generation runs with the model already loaded.
Goal during generation: max gap <= 50 ms, p99 <= 16 ms. An idle baseline is measured in the same run.
Then cancel latency: Cancel is pressed (the queue's action, as Esc does) at a step; reported are the
steps the engine ran after the press and the milliseconds until the GUI heard the job was cancelled.
Goal: <= 1 step.

    QT_QPA_PLATFORM=offscreen python bench/bench_app_responsiveness.py [--size 128] [--steps 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


class Heartbeat:
    def __init__(self, interval_ms: int = 5):
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        self.ticks.append(time.perf_counter())
        return [(b - a) * 1000 for a, b in zip(self.ticks, self.ticks[1:])]


def summary(name: str, gaps: list[float], goal: bool = False) -> str:
    gaps_sorted = sorted(gaps)
    p99 = gaps_sorted[min(len(gaps_sorted) - 1, int(0.99 * len(gaps_sorted)))]
    text = (f"{name:<34} ticks {len(gaps):5d}  max {max(gaps):7.1f} ms  p99 {p99:6.1f} ms  "
            f"median {statistics.median(gaps):5.1f} ms")
    if goal:
        text += f"   goal max<=50, p99<=16 -> {'PASS' if max(gaps) <= 50 and p99 <= 16 else 'MISS'}"
    return text


async def run(args: argparse.Namespace, app: QApplication) -> None:
    from desktop_app.app import Studio

    tmp = tempfile.TemporaryDirectory(prefix="easel-bench-")
    data = Path(tmp.name)
    engine_steps: list[tuple[int, float]] = []  # (step, perf_counter) as the engine thread saw them

    def factory():
        from desktop_app.bridge import default_engine_factory

        engine = default_engine_factory()  # the app's own start-up path (imports warmed on this thread)
        original = engine.generate

        def generate(request, on_progress=None, cancel=None):
            def spy(progress):
                engine_steps.append((progress.image_index * progress.total + progress.step, time.perf_counter()))
                if on_progress is not None:
                    on_progress(progress)

            return original(request, on_progress=spy, cancel=cancel)

        engine.generate = generate
        return engine

    studio = Studio(data, engine_factory=factory, app=app)
    studio.window.show()
    app.processEvents()
    beat = Heartbeat()
    await asyncio.sleep(0.2)

    beat.start()
    await asyncio.sleep(1.0)
    idle = beat.stop()

    beat.start()
    studio.start()
    await studio.bridge.wait_ready()
    startup = beat.stop()

    def make_model():
        from engine.testmodels import make_test_model

        return make_test_model(data / "models" / "tiny", family="sd15", seed=0)

    model = await studio.bridge.run_on_engine_thread(make_model)
    await studio.actions.rescan_models()
    p = studio.params
    p.model, p.prompt = str(model), "a lighthouse in a storm, detailed"
    p.width = p.height = args.size
    p.steps, p.batch_count, p.seed_mode, p.seed = args.steps, 1, "fixed", 1

    async def one_job() -> object:
        done = asyncio.get_running_loop().create_future()

        def on_removed(job):
            if not done.done():
                done.set_result(job)

        studio.queue.job_removed.connect(on_removed)
        job = studio.actions.generate()
        await done
        studio.queue.job_removed.disconnect(on_removed)
        return job

    beat.start()
    t0 = time.perf_counter()
    first = await one_job()
    gen_load = beat.stop()
    t_first = time.perf_counter() - t0
    beat.start()
    t0 = time.perf_counter()
    second = await one_job()
    gen = beat.stop()
    t_second = time.perf_counter() - t0
    assert first.status.value == second.status.value == "done", (first.error, second.error)

    # Cancel latency, a few times at different steps.
    p.steps = 200
    cancels = []
    for at_step in (3, 7, 12):
        engine_steps.clear()
        pressed: dict[str, float] = {}
        done = asyncio.get_running_loop().create_future()

        def on_progress(job, info, at_step=at_step, pressed=pressed):
            if info.step >= at_step and "t" not in pressed:
                pressed["t"] = time.perf_counter()
                studio.actions.cancel_current()

        def on_cancelled(job, done=done):
            if not done.done():
                done.set_result(time.perf_counter())

        studio.queue.job_progressed.connect(on_progress)
        studio.queue.job_cancelled.connect(on_cancelled)
        job = studio.actions.generate()
        t_heard = await asyncio.wait_for(done, 120)
        studio.queue.job_progressed.disconnect(on_progress)
        studio.queue.job_cancelled.disconnect(on_cancelled)
        steps_after = sum(1 for _s, t in engine_steps if t > pressed["t"])
        step_time = statistics.median(b - a for (_, a), (_, b) in zip(engine_steps, engine_steps[1:]))
        cancels.append((at_step, steps_after, (t_heard - pressed["t"]) * 1000, step_time * 1000, job.cancelled_at_step))

    print(f"device {studio.status.runtime.get('device')}, dtype {studio.status.runtime.get('dtype')}, "
          f"{args.size}x{args.size}, {args.steps} steps; first job {t_first:.2f} s (incl. load), second {t_second:.2f} s")
    print(summary("idle (baseline)", idle))
    print(summary("engine start-up (torch import)", startup) + "   (no goal: module init holds the GIL)")
    print(summary("generation incl. model load", gen_load, goal=True))
    print(summary("generation, model loaded", gen, goal=True))
    for at_step, after, ms, step_ms, engine_step in cancels:
        print(f"cancel pressed at step {at_step:>2}: engine ran {after} more step(s) (stopped at step {engine_step}), "
              f"GUI heard 'cancelled' after {ms:.1f} ms (one step = {step_ms:.1f} ms)   goal <= 1 step -> "
              f"{'PASS' if after <= 1 else 'MISS'}")
    studio.window.close()
    tmp.cleanup()


def main() -> int:
    import qasync

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(run(args, app))
    return 0


if __name__ == "__main__":
    sys.exit(main())

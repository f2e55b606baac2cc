"""The farm on a local Ray cluster: batch throughput with 1 vs 2 workers, and the per-job cost of scheduling
through Ray against running the same jobs on an Engine in this process.

    python bench/bench_farm.py [--jobs 8] [--size 256] [--steps 10] [--rounds 3]

1. Throughput: an ``--jobs`` batch (seeds 1..N) on a farm of one worker (all cores for its torch threads)
   and on a farm of two (half the cores each); prints jobs/s and the ratio 2 workers / 1 worker.
2. Overhead: the same batch run by ``engine.grid.run_local`` on an Engine here and by a one-worker farm,
   both with the same torch thread count and both saving every image; rounds interleaved so machine noise
   hits both alike. Prints the median per-round ratio farm / local. Goal: <= 1.05.
Models are loaded (and workers started) before timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from engine.api import GenerationRequest
    from engine.engine import Engine
    from engine.farm import cluster
    from engine.farm.farm import Farm
    from engine.grid import GridRun, parse_axis, plan_grid, run_local
    from engine.models.hashes import HashCache
    from engine.testmodels import make_test_model

    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="easel-bench-farm-"))
    model = Path(make_test_model(tmp / "models" / "tiny", family="sd15", seed=0))
    base = GenerationRequest(prompt="a lighthouse at dusk", model=str(model), steps=args.steps, width=args.size,
                             height=args.size, seed=1)
    plan = plan_grid(base, parse_axis(f"seed=1-{args.jobs}"))
    hashes = {str(model): HashCache().sha256(str(model))}
    cluster.connect(None)  # one local cluster for every farm below (each farm then only stops its workers)
    print(f"{cores} cores; {args.jobs} jobs of {args.size}x{args.size}, {args.steps} steps, tiny SD1.5 model")

    def timed_farm(farm, runs) -> float:
        run = GridRun(plan, out=tmp / f"out-{time.monotonic_ns()}")
        run.out.mkdir()
        started = time.perf_counter()
        farm.run(plan, run, model_hashes=hashes)
        elapsed = time.perf_counter() - started
        assert len(run.paths) == args.jobs, run.failures
        runs.append(elapsed)
        return elapsed

    warm = plan_grid(base, parse_axis("seed=99"))

    def warm_up(farm) -> None:  # two jobs per worker: each worker imports torch and loads its model
        warm_plan = plan_grid(base, parse_axis(f"seed=100-{99 + 2 * len(farm.workers)}"))
        farm.run(warm_plan, GridRun(warm_plan, out=tmp), model_hashes=hashes)

    # 1. Throughput, 1 vs 2 workers.
    per_workers = {}
    for n in (1, 2):
        with Farm(workers=n, folders=[str(model.parent)], device="cpu", data_dir=tmp / f"data{n}",
                  include_defaults=False) as farm:
            warm_up(farm)
            times: list[float] = []
            for _ in range(max(1, args.rounds - 1)):
                timed_farm(farm, times)
            per_workers[n] = statistics.median(times)
            print(f"  {n} worker(s) x {cores // n} thread(s): {per_workers[n]:.2f} s for {args.jobs} jobs "
                  f"({args.jobs / per_workers[n]:.2f} jobs/s; runs {', '.join(f'{t:.2f}' for t in times)})")
    print(f"throughput 2 workers / 1 worker: {per_workers[1] / per_workers[2]:.2f}x")

    # 2. Overhead: one-worker farm vs run_local on an Engine here, same thread count.
    torch.set_num_threads(cores)
    engine = Engine(device="cpu")
    run_local(warm, engine, GridRun(warm, out=tmp))
    local_times: list[float] = []
    farm_times: list[float] = []
    with Farm(workers=1, folders=[str(model.parent)], device="cpu", data_dir=tmp / "data-o",
              include_defaults=False) as farm:
        warm_up(farm)
        for _ in range(args.rounds):
            run = GridRun(plan, out=tmp / f"local-{time.monotonic_ns()}")
            run.out.mkdir()
            started = time.perf_counter()
            run_local(plan, engine, run)
            local_times.append(time.perf_counter() - started)
            timed_farm(farm, farm_times)
    ratios = [f / loc for f, loc in zip(farm_times, local_times)]
    per_job = (statistics.median(farm_times) - statistics.median(local_times)) / args.jobs
    print(f"local Engine: {', '.join(f'{t:.2f}' for t in local_times)} s; farm (1 worker): "
          f"{', '.join(f'{t:.2f}' for t in farm_times)} s")
    print(f"overhead farm / local: median ratio {statistics.median(ratios):.3f} "
          f"({per_job * 1000:+.0f} ms per job; goal <= 1.05)")
    cluster.shutdown()


if __name__ == "__main__":
    main()

"""Engine.generate against a raw diffusers pipeline call on the same model: the engine's overhead.

Same tiny SD1.5-architecture model (from `easel make-test-model`), 256x256, 10 steps, Euler a,
same seed; the two runs are interleaved so machine noise hits both alike. Prints the median of
the per-round ratios engine / raw. Goal: <= 1.03. The engine run includes what the app pays for:
a progress callback every step and a latent preview every 2 steps.

    python bench/bench_engine_overhead.py [--rounds 9] [--size 256] [--steps 10] [--threads 1]

Both wall time and process CPU time are printed. On a machine shared with other work, wall-time
ratios swing with the neighbours' load; with one torch thread, CPU time counts only this
process's own work and is the steadier figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: all work on this thread, so CPU time is exact)")
    args = parser.parse_args()

    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    from engine.api import GenerationRequest
    from engine.engine import Engine
    from engine.testmodels import make_test_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_test_model(Path(tmp) / "tiny", family="sd15")
        engine = Engine(device="cpu")
        request = GenerationRequest(prompt="a lighthouse on a cliff at dusk", negative_prompt="blurry",
                                    model=str(model), seed=1234, steps=args.steps, width=args.size,
                                    height=args.size, sampler="Euler a", guidance_scale=7.0)
        raw = StableDiffusionPipeline.from_pretrained(model, local_files_only=True, safety_checker=None,
                                                      requires_safety_checker=False)
        raw.scheduler = EulerAncestralDiscreteScheduler.from_config(raw.scheduler.config)
        raw.set_progress_bar_config(disable=True)

        def timed(fn) -> tuple[float, float]:
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            return time.perf_counter() - w0, time.process_time() - c0

        def run_engine() -> None:
            engine.generate(request, on_progress=lambda p: None)

        def run_raw() -> None:
            with torch.inference_mode():
                raw(prompt=request.prompt, negative_prompt=request.negative_prompt, num_inference_steps=args.steps,
                    guidance_scale=7.0, width=args.size, height=args.size,
                    generator=torch.Generator("cpu").manual_seed(1234))

        timed(run_engine), timed(run_raw)  # warm-up: first-call allocations, model hash
        wall, cpu = [], []
        for i in range(args.rounds):
            if i % 2:
                r, e = timed(run_raw), timed(run_engine)
            else:
                e, r = timed(run_engine), timed(run_raw)
            wall.append((e[0], r[0]))
            cpu.append((e[1], r[1]))
    print(f"model: tiny SD1.5 architecture, {args.size}x{args.size}, {args.steps} steps, Euler a, CPU, "
          f"{torch.get_num_threads()} torch thread(s), {args.rounds} interleaved rounds")
    for label, pairs in (("wall time", wall), ("process CPU time", cpu)):
        ratios = [e / r for e, r in pairs]
        print(f"{label:>16}: engine median {statistics.median(e for e, _ in pairs):.3f}s, raw diffusers median "
              f"{statistics.median(r for _, r in pairs):.3f}s, ratio median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f})  goal <= 1.03")


if __name__ == "__main__":
    main()

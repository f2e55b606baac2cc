"""Engine.generate against a raw diffusers pipeline call on the same model: the engine's overhead.

Same tiny SD1.5-architecture model (from `easel make-test-model`), 256x256, 10 steps, Euler a,
same seed; the two runs are interleaved so machine noise hits both alike. Prints the median of
the per-round ratios engine / raw. Goal: <= 1.03. The engine run includes what the app pays for:
a progress callback every step and a latent preview every 2 steps.

    python bench/bench_engine_overhead.py [--rounds 9] [--size 256] [--steps 10]
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
    args = parser.parse_args()

    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    from engine.api import GenerationRequest
    from engine.engine import Engine
    from engine.testmodels import make_test_model

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

        def run_engine() -> float:
            t0 = time.perf_counter()
            engine.generate(request, on_progress=lambda p: None)
            return time.perf_counter() - t0

        def run_raw() -> float:
            t0 = time.perf_counter()
            with torch.inference_mode():
                raw(prompt=request.prompt, negative_prompt=request.negative_prompt, num_inference_steps=args.steps,
                    guidance_scale=7.0, width=args.size, height=args.size,
                    generator=torch.Generator("cpu").manual_seed(1234))
            return time.perf_counter() - t0

        run_engine(), run_raw()  # warm-up: first-call allocations, model hash
        ratios, e_times, r_times = [], [], []
        for i in range(args.rounds):
            if i % 2:
                r, e = run_raw(), run_engine()
            else:
                e, r = run_engine(), run_raw()
            e_times.append(e)
            r_times.append(r)
            ratios.append(e / r)
    print(f"model: tiny SD1.5 architecture, {args.size}x{args.size}, {args.steps} steps, Euler a, CPU, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    print(f"engine median {statistics.median(e_times):.3f}s, raw diffusers median {statistics.median(r_times):.3f}s")
    print(f"overhead ratio (engine / raw), median of rounds: {statistics.median(ratios):.3f}  (goal <= 1.03)")


if __name__ == "__main__":
    main()

"""Engine.generate against raw diffusers pipeline calls on the same model: the engine's overhead.

Same SD1.5-architecture model (random weights from `engine.testmodels`), Euler a, same seeds; the
two runs are interleaved so machine noise hits both alike, and the median of the per-round ratios
engine / raw is printed. Goal: <= 1.03 everywhere. The engine run includes what the app pays for: a
progress callback every step and a latent preview every 2 steps.

    python bench/bench_engine_overhead.py [--rounds 9] [--size 256] [--steps 10] [--threads 1]
    python bench/bench_engine_overhead.py --short [--model full] [--rounds 3] [--sizes 256,512] [--step-counts 1,2,4]

``--short`` measures the jobs one-step models and live painting make common: 1, 2 and 4 steps at
256² and 512², batch 1 / 2 / 4 (``--model full``: the full-size SD 1.5 architecture, 860M-parameter
UNet, written to a temporary folder first; about 2 GB and minutes to build). A batch of n is n images
one after another with seeds seed..seed+n-1 on both sides: Easel runs a batch image by image so that
any one image regenerates alone bit for bit, so the raw baseline does the same work.

Every run has a prompt of its own (the same for both sides, ``PROMPT`` plus the run's number), so the
engine encodes it as raw diffusers does; ``--same-prompt`` repeats one prompt, the case of a regenerate,
where the engine's prompt cache skips the text encoder and raw diffusers encodes every time.

Both wall time and process CPU time are printed. On a machine shared with other work, wall-time
ratios swing with the neighbours' load; with one torch thread, CPU time counts only this process's
own work and is the steadier figure.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT, NEGATIVE, SEED = "a lighthouse on a cliff at dusk", "blurry", 1234
_NUMBERS = itertools.count()  # each round's prompt is new for the whole run: no prompt-cache hit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: all work on this thread, so CPU time is exact)")
    parser.add_argument("--short", action="store_true", help="the short-job grid (1/2/4 steps, 256/512, batch 1/2/4)")
    parser.add_argument("--model", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--same-prompt", action="store_true", help="one prompt for every run (prompt cache hits)")
    parser.add_argument("--sizes", default="256,512", help="with --short: the sizes to run, e.g. 512")
    parser.add_argument("--step-counts", default="1,2,4", help="with --short: the step counts to run, e.g. 4")
    parser.add_argument("--no-warmup", action="store_true",
                        help="an untimed warm-up run in the first row only (a second process running only later rows)")
    args = parser.parse_args()

    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    from engine.api import GenerationRequest
    from engine.engine import Engine
    from engine.testmodels import make_test_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_test_model(Path(tmp) / args.model, family="sd15", size=args.model)
        engine = Engine(device="cpu")
        raw = StableDiffusionPipeline.from_pretrained(model, local_files_only=True, safety_checker=None,
                                                      requires_safety_checker=False,
                                                      torch_dtype=torch.float32)  # as the engine runs on CPU
        raw.scheduler = EulerAncestralDiscreteScheduler.from_config(raw.scheduler.config)
        raw.set_progress_bar_config(disable=True)
        sizes = [int(x) for x in args.sizes.split(",")]
        step_counts = [int(x) for x in args.step_counts.split(",")]
        configs = ([(s, size, b) for size in sizes for s in step_counts for b in (1, 2, 4)] if args.short
                   else [(args.steps, args.size, 1)])
        print(f"model: {args.model} SD1.5 architecture, Euler a, CPU, {torch.get_num_threads()} torch thread(s), "
              f"{args.rounds} interleaved rounds per row; ratio = engine / raw diffusers, goal <= 1.03")
        print(f"{'steps':>5} {'size':>5} {'batch':>5}  {'engine s':>9} {'raw s':>9} {'wall ratio':>10} {'cpu ratio':>10}")
        for row, (steps, size, batch) in enumerate(configs):
            request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, model=str(model), seed=SEED,
                                        steps=steps, width=size, height=size, sampler="Euler a", guidance_scale=7.0,
                                        batch_count=batch)
            wall, cpu = measure(engine, raw, request, args.rounds, args.same_prompt,
                                not args.no_warmup or row == 0)
            e_med = statistics.median(e for e, _ in wall)
            r_med = statistics.median(r for _, r in wall)
            print(f"{steps:>5} {size:>5} {batch:>5}  {e_med:>9.3f} {r_med:>9.3f} "
                  f"{statistics.median(e / r for e, r in wall):>10.3f} {statistics.median(e / r for e, r in cpu):>10.3f}",
                  flush=True)


def measure(engine, raw, request, rounds: int, same_prompt: bool = False, warmup: bool = True):
    """(wall, cpu): per round (engine seconds, raw seconds), interleaved, after one warm-up each; each
    round's two runs share a prompt of their own unless ``same_prompt``."""
    import torch

    def timed(fn) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w0, time.process_time() - c0

    prompt = request.prompt

    def run_engine() -> None:
        engine.generate(request.replace(prompt=prompt), on_progress=lambda p: None)

    def run_raw() -> None:
        with torch.inference_mode():
            for i in range(request.batch_count):
                raw(prompt=prompt, negative_prompt=request.negative_prompt,
                    num_inference_steps=request.steps, guidance_scale=request.guidance_scale, width=request.width,
                    height=request.height, generator=torch.Generator("cpu").manual_seed(request.seed + i))

    if warmup:
        timed(run_engine), timed(run_raw)  # warm-up: first-call allocations, model hash
    wall, cpu = [], []
    for i in range(rounds):
        if not same_prompt:
            prompt = f"{request.prompt}, study {next(_NUMBERS)}"
        if i % 2:
            r, e = timed(run_raw), timed(run_engine)
        else:
            e, r = timed(run_engine), timed(run_raw)
        wall.append((e[0], r[0]))
        cpu.append((e[1], r[1]))
    return wall, cpu


if __name__ == "__main__":
    main()

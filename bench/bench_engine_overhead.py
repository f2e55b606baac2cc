"""Engine.generate against raw diffusers pipeline calls on the same model: the engine's overhead.

Same SD1.5-architecture model (random weights from `engine.testmodels`), Euler a, same seeds; the
two runs are interleaved so machine noise hits both alike, and the median of the per-round ratios
engine / raw is printed. Goal: <= 1.03 everywhere. The engine run includes what the app pays for: a
progress callback every step and a latent preview every 2 steps.

    python bench/bench_engine_overhead.py [--rounds 9] [--size 256] [--steps 10] [--threads 1]
    python bench/bench_engine_overhead.py --short [--model full] [--rounds 3] [--sizes 256,512] [--step-counts 1,2,4]
    python bench/bench_engine_overhead.py --short --model full --paired [--rounds 2]

``--short`` measures the jobs one-step models and live painting make common: 1, 2 and 4 steps at
256² and 512², batch 1 / 2 / 4 (``--model full``: the full-size SD 1.5 architecture, 860M-parameter
UNet, written to a temporary folder first; about 2 GB and minutes to build). A batch of n is n images
one after another with seeds seed..seed+n-1 on both sides: Easel runs a batch image by image so that
any one image regenerates alone bit for bit, so the raw baseline does the same work.

Every run has a prompt of its own (the same for both sides, ``PROMPT`` plus the run's number), so the
engine encodes it as raw diffusers does; ``--same-prompt`` repeats one prompt, the case of a regenerate,
where the engine's prompt cache skips the text encoder and raw diffusers encodes every time.

Both wall time and process CPU time are printed, as medians of the per-round ratios, and the ratio of
the fastest runs ("min ratio": a neighbour's load only ever adds time, so the fastest run of each side is
the closest to its own cost). On a machine shared with other work, wall-time
ratios swing with the neighbours' load; with one torch thread, CPU time counts only this process's
own work and is the steadier figure.

``--paired`` runs the two sides at the same time instead, in two processes of one torch thread each,
one core each (swapping cores every round), so that whatever else slows the machine down slows both
sides in the same seconds: on the shared 2-core machine, one side timed after the other swung ±8% a row
from run to run, more than the margin being measured. Needs two free cores.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT, NEGATIVE, SEED = "a lighthouse on a cliff at dusk", "blurry", 1234
_NUMBERS = itertools.count()  # each round's prompt is new for the whole run: no prompt-cache hit
SIDES = ("engine", "raw")


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
    parser.add_argument("--paired", action="store_true",
                        help="both sides at once, one process and one core each (one torch thread each)")
    args = parser.parse_args()

    from engine.testmodels import make_test_model

    sizes = [int(x) for x in args.sizes.split(",")]
    step_counts = [int(x) for x in args.step_counts.split(",")]
    configs = ([(s, size, b) for size in sizes for s in step_counts for b in (1, 2, 4)] if args.short
               else [(args.steps, args.size, 1)])
    with tempfile.TemporaryDirectory() as tmp:
        model = str(make_test_model(Path(tmp) / args.model, family="sd15", size=args.model))
        sides = PairedSides(model) if args.paired else LocalSides(model, args.threads)
        how = ("both sides at once, one core and one torch thread each" if args.paired
               else f"{args.threads} torch thread(s), the two sides interleaved")
        print(f"model: {args.model} SD1.5 architecture, Euler a, CPU, {how}, {args.rounds} rounds per row; "
              "ratio = engine / raw diffusers, goal <= 1.03", flush=True)
        print(f"{'steps':>5} {'size':>5} {'batch':>5}  {'engine s':>9} {'raw s':>9} {'wall ratio':>10} {'cpu ratio':>10}"
              f" {'min ratio':>10}", flush=True)
        try:
            for row, (steps, size, batch) in enumerate(configs):
                job = dict(steps=steps, size=size, batch=batch)
                if not args.no_warmup or row == 0:
                    sides.run(job, PROMPT, 0)  # untimed warm-up: first-call allocations, model hash
                wall, cpu = [], []
                for i in range(args.rounds):
                    prompt = PROMPT if args.same_prompt else f"{PROMPT}, study {next(_NUMBERS)}"
                    (ew, ec), (rw, rc) = sides.run(job, prompt, i)
                    wall.append((ew, rw))
                    cpu.append((ec, rc))
                e_med = statistics.median(e for e, _ in wall)
                r_med = statistics.median(r for _, r in wall)
                print(f"{steps:>5} {size:>5} {batch:>5}  {e_med:>9.3f} {r_med:>9.3f} "
                      f"{statistics.median(e / r for e, r in wall):>10.3f} {statistics.median(e / r for e, r in cpu):>10.3f}"
                      f" {min(e for e, _ in wall) / min(r for _, r in wall):>10.3f}", flush=True)
        finally:
            sides.close()


class Side:
    """One side of the comparison: Easel's Engine, or the raw diffusers pipeline on the same model."""

    def __init__(self, kind: str, model: str):
        import torch
        from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

        from engine.engine import Engine

        self.kind, self.model = kind, model
        if kind == "engine":
            self.engine = Engine(device="cpu")
            return
        self.raw = StableDiffusionPipeline.from_pretrained(model, local_files_only=True, safety_checker=None,
                                                           requires_safety_checker=False,
                                                           torch_dtype=torch.float32)  # as the engine runs on CPU
        # Euler a as Easel (and A1111) schedules it: timesteps spread over the whole range ("linspace"),
        # not the SD 1.5 config's "leading", so that both sides run the same job step for step.
        self.raw.scheduler = EulerAncestralDiscreteScheduler.from_config(self.raw.scheduler.config,
                                                                         timestep_spacing="linspace")
        self.raw.set_progress_bar_config(disable=True)

    def timed(self, job: dict, prompt: str) -> tuple[float, float]:
        """(wall, CPU) seconds of one job: a batch of ``job["batch"]`` images, seeds SEED, SEED+1, ..."""
        w0, c0 = time.perf_counter(), time.process_time()
        self._run(job, prompt)
        return time.perf_counter() - w0, time.process_time() - c0

    def _run(self, job: dict, prompt: str) -> None:
        import torch

        steps, size, batch = job["steps"], job["size"], job["batch"]
        if self.kind == "engine":
            from engine.api import GenerationRequest

            request = GenerationRequest(prompt=prompt, negative_prompt=NEGATIVE, model=self.model, seed=SEED,
                                        steps=steps, width=size, height=size, sampler="Euler a", guidance_scale=7.0,
                                        batch_count=batch)
            self.engine.generate(request, on_progress=lambda p: None)  # progress every step, previews every 2
            return
        with torch.inference_mode():
            for i in range(batch):
                self.raw(prompt=prompt, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7.0,
                         width=size, height=size, generator=torch.Generator("cpu").manual_seed(SEED + i))


class LocalSides:
    """Both sides in this process, one after the other (the order alternating by round)."""

    def __init__(self, model: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.sides = {kind: Side(kind, model) for kind in SIDES}

    def run(self, job: dict, prompt: str, round_: int):
        order = SIDES if round_ % 2 == 0 else SIDES[::-1]
        times = {kind: self.sides[kind].timed(job, prompt) for kind in order}
        return times["engine"], times["raw"]

    def close(self) -> None:
        pass


def _worker(kind: str, model: str, conn) -> None:
    """A paired side's process: one torch thread, the core it is told, one job per message."""
    import torch

    torch.set_num_threads(1)
    side = Side(kind, model)
    conn.send("ready")
    while (message := conn.recv()) is not None:
        job, prompt, core = message
        if core is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {core})
        conn.send(side.timed(job, prompt))


class PairedSides:
    """Each side in a process of its own; a round starts both at once, on two different cores."""

    def __init__(self, model: str):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.cores = sorted(os.sched_getaffinity(0))[:2] if hasattr(os, "sched_getaffinity") else [None, None]
        if len(self.cores) < 2:
            raise SystemExit("--paired needs two cores")
        self.conns, self.procs = {}, []
        for kind in SIDES:
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(kind, model, theirs), daemon=True)
            proc.start()
            self.conns[kind], self.procs = ours, self.procs + [proc]
        for conn in self.conns.values():
            if conn.recv() != "ready":
                raise SystemExit("a side did not start")

    def run(self, job: dict, prompt: str, round_: int):
        cores = self.cores if round_ % 2 == 0 else self.cores[::-1]
        for kind, core in zip(SIDES, cores):
            self.conns[kind].send((job, prompt, core))
        times = {kind: self.conns[kind].recv() for kind in SIDES}
        return times["engine"], times["raw"]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.send(None)
        for proc in self.procs:
            proc.join(timeout=30)


if __name__ == "__main__":
    main()

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

``--shared`` builds the raw pipeline from the engine's own loaded UNet, VAE, text encoder and
tokenizer (after checking they are as diffusers leaves them: no hooks, default attention, unfused,
contiguous float32, no VAE slicing or tiling), so both sides run the very same weights at the same
addresses; two separately loaded copies of a model differ in speed by several per cent. The warm-up
also compares the two sides' pixels (0 of 255: the same work). ``--workers N`` runs N such processes,
one core and one torch thread each, sharing the rows out, all rows of a round before the next:

    python bench/bench_engine_overhead.py --short --model full --shared --workers 2 --rounds 3
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
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
    parser.add_argument("--shared", action="store_true",
                        help="the raw side runs on the engine's own loaded modules (one process, one after the other)")
    parser.add_argument("--workers", type=int, default=1,
                        help="with --shared: this many processes (one core and one torch thread each) share out the "
                             "rows, all rows of a round before the next round")
    args = parser.parse_args()

    from engine.testmodels import make_test_model

    sizes = [int(x) for x in args.sizes.split(",")]
    step_counts = [int(x) for x in args.step_counts.split(",")]
    configs = ([(s, size, b) for size in sizes for s in step_counts for b in (1, 2, 4)] if args.short
               else [(args.steps, args.size, 1)])
    with tempfile.TemporaryDirectory() as tmp:
        model = str(make_test_model(Path(tmp) / args.model, family="sd15", size=args.model))
        if args.shared and args.workers > 1:
            return _farm(model, configs, args)
        sides = (PairedSides(model) if args.paired else SharedSides(model, args.threads) if args.shared
                 else LocalSides(model, args.threads))
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

    def __init__(self, kind: str, model: str, share: Side | None = None):
        import torch
        from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

        from engine.engine import Engine

        self.kind, self.model = kind, model
        if kind == "engine":
            self.engine = Engine(device="cpu")
            return
        if share is not None:  # the engine's own modules: the same weights at the same addresses
            base = share.engine.runner.base
            _check_plain(base)
            self.raw = StableDiffusionPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                                               unet=base.unet, scheduler=base.scheduler, safety_checker=None,
                                               feature_extractor=None, requires_safety_checker=False)
        else:
            self.raw = StableDiffusionPipeline.from_pretrained(model, local_files_only=True, safety_checker=None,
                                                               requires_safety_checker=False,
                                                               torch_dtype=torch.float32)  # as the engine runs on CPU
        if share is not None:  # the model's own scheduler config, not whatever the engine last set
            self.raw.scheduler = EulerAncestralDiscreteScheduler.from_pretrained(model, subfolder="scheduler",
                                                                                 timestep_spacing="linspace")
            self.raw.set_progress_bar_config(disable=True)
            return
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

    def _run(self, job: dict, prompt: str) -> list:
        import torch

        steps, size, batch = job["steps"], job["size"], job["batch"]
        if self.kind == "engine":
            from engine.api import GenerationRequest

            request = GenerationRequest(prompt=prompt, negative_prompt=NEGATIVE, model=self.model, seed=SEED,
                                        steps=steps, width=size, height=size, sampler="Euler a", guidance_scale=7.0,
                                        batch_count=batch)
            # progress every step, previews every 2, and a cancel token as the app passes (never set)
            return list(self.engine.generate(request, on_progress=lambda p: None, cancel=threading.Event()).images)
        with torch.inference_mode():
            return [self.raw(prompt=prompt, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7.0,
                             width=size, height=size, generator=torch.Generator("cpu").manual_seed(SEED + i)).images[0]
                    for i in range(batch)]


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


def _check_plain(pipe) -> None:
    """Refuse to share ``pipe``'s modules with the raw side unless they are as diffusers leaves them:
    no hooks left on any module, default attention processors, unfused projections, contiguous
    float32 weights, VAE slicing and tiling off. Otherwise the raw side would run the engine's
    settings, and the comparison would hide what they cost."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    problems = []
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, name)
        for sub_name, sub in module.named_modules():
            if sub._forward_hooks or sub._forward_pre_hooks or getattr(sub, "_hf_hook", None) is not None:
                problems.append(f"{name}.{sub_name} has hooks")
            if getattr(sub, "to_qkv", None) is not None or getattr(sub, "fused_projections", False):
                problems.append(f"{name}.{sub_name} has fused projections")
        for p_name, param in module.named_parameters():
            if param.dtype != torch.float32 or not param.is_contiguous():
                problems.append(f"{name}.{p_name} is {param.dtype}, contiguous={param.is_contiguous()}")
    for name in ("unet", "vae"):
        kinds = {type(p).__name__ for p in getattr(pipe, name).attn_processors.values()}
        if kinds != {AttnProcessor2_0.__name__}:
            problems.append(f"{name} attention processors: {sorted(kinds)}")
    if pipe.vae.use_slicing or pipe.vae.use_tiling:
        problems.append("VAE slicing or tiling on")
    if problems:
        raise SystemExit("the engine's modules are not diffusers' defaults, cannot share them: "
                         + "; ".join(problems[:5]))


class SharedSides:
    """Both sides in this process on the very same modules (the raw pipeline is built from the
    engine's loaded UNet, VAE, text encoder and tokenizer), one after the other, the order
    alternating by round. Two separately loaded copies of one model can differ in speed by several
    per cent (where their pages landed); shared modules leave only the two orchestrations to compare."""

    def __init__(self, model: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        engine = Side("engine", model)
        engine._run(dict(steps=1, size=64, batch=1), PROMPT)  # loads the model
        self.sides = {"engine": engine, "raw": Side("raw", model, share=engine)}

    def run(self, job: dict, prompt: str, round_: int):
        order = SIDES if round_ % 2 == 0 else SIDES[::-1]
        times = {kind: self.sides[kind].timed(job, prompt) for kind in order}
        return times["engine"], times["raw"]

    def same_images(self, job: dict, prompt: str) -> float:
        """The largest pixel difference between the two sides' images of ``job`` (0: the same work)."""
        import numpy as np

        a, b = (self.sides[kind]._run(job, prompt) for kind in SIDES)
        return max(float(np.abs(np.asarray(x, dtype=np.int16) - np.asarray(y, dtype=np.int16)).max())
                   for x, y in zip(a, b))

    def close(self) -> None:
        pass


def _cost(config) -> float:
    """A rough relative cost of a row, to hand out the longest rows first."""
    steps, size, batch = config
    return batch * (steps + 1.5) * (size / 256) ** 2


def _farm(model: str, configs: list, args) -> None:
    """``--shared --workers N``: N processes of SharedSides, each pinned to a core of its own. Rounds
    are run one after the other (all rows of round 1, then round 2, ...), so a stopped run still has
    whole rounds; each row's two sides always run in the same process, one after the other."""
    import multiprocessing
    from multiprocessing.connection import wait

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [None] * args.workers
    if len(cores) < args.workers:
        raise SystemExit(f"--workers {args.workers} needs {args.workers} cores")
    ctx = multiprocessing.get_context("spawn")
    conns, procs = [], []
    for core in cores[:args.workers]:
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_shared_worker, args=(model, core, theirs), daemon=True)
        proc.start()
        conns.append(ours)
        procs.append(proc)
    for conn in conns:
        if conn.recv() != "ready":
            raise SystemExit("a worker did not start")
    print(f"model: {args.model} SD1.5 architecture, Euler a, CPU; the raw pipeline on the engine's own modules; "
          f"{args.workers} processes of one core and one torch thread each; ratio = engine / raw diffusers, "
          "goal <= 1.03", flush=True)
    results: dict[tuple, list] = {config: [] for config in configs}
    try:
        for round_ in range(args.rounds):
            todo = sorted(configs, key=_cost, reverse=True)
            idle, busy = list(conns), {}
            while todo or busy:
                while todo and idle:
                    conn, config = idle.pop(), todo.pop(0)
                    prompt = PROMPT if args.same_prompt else f"{PROMPT}, study {next(_NUMBERS)}"
                    conn.send((dict(steps=config[0], size=config[1], batch=config[2]), prompt, round_))
                    busy[conn] = config
                for conn in wait(list(busy)):
                    config = busy.pop(conn)
                    reply = conn.recv()
                    if isinstance(reply, str):
                        raise SystemExit(reply)
                    times, diff = reply
                    results[config].append(times)
                    if diff is not None:
                        print(f"  warm-up at {config[1]}², 1 step: the two sides' images differ by at most {diff:.0f} "
                              "of 255 per pixel", flush=True)
                    idle.append(conn)
            print(f"after round {round_ + 1}:", flush=True)
            _table(results)
    finally:
        for conn in conns:
            conn.send(None)
        for proc in procs:
            proc.join(timeout=60)


def _table(results: dict) -> None:
    print(f"{'steps':>5} {'size':>5} {'batch':>5}  {'engine s':>9} {'raw s':>9} {'wall ratio':>10} {'cpu ratio':>10}"
          f" {'min ratio':>10}  per-round cpu ratios", flush=True)
    totals = [0.0, 0.0]
    for (steps, size, batch), runs in results.items():
        if not runs:
            continue
        wall = [(e[0], r[0]) for e, r in runs]
        cpu = [(e[1], r[1]) for e, r in runs]
        totals[0] += sum(e for e, _ in cpu)
        totals[1] += sum(r for _, r in cpu)
        print(f"{steps:>5} {size:>5} {batch:>5}  {statistics.median(e for e, _ in wall):>9.3f} "
              f"{statistics.median(r for _, r in wall):>9.3f} {statistics.median(e / r for e, r in wall):>10.3f} "
              f"{statistics.median(e / r for e, r in cpu):>10.3f} {min(e for e, _ in wall) / min(r for _, r in wall):>10.3f}"
              "  " + " ".join(f"{e / r:.3f}" for e, r in cpu), flush=True)
    print(f"all rows: engine {totals[0]:.1f} s CPU, raw {totals[1]:.1f} s CPU, ratio {totals[0] / totals[1]:.3f}",
          flush=True)


def _shared_worker(model: str, core, conn) -> None:
    """A ``--workers`` process: SharedSides on one core and one torch thread; the first job of each
    image size is preceded by an untimed warm-up of both sides that also compares their pixels."""
    try:
        if core is not None:
            os.sched_setaffinity(0, {core})
        sides = SharedSides(model, 1)
        conn.send("ready")
        warm: set[int] = set()
        while (message := conn.recv()) is not None:
            job, prompt, round_ = message
            diff = None
            if job["size"] not in warm:
                diff = sides.same_images(dict(steps=1, size=job["size"], batch=1), PROMPT)
                warm.add(job["size"])
            conn.send((sides.run(job, prompt, round_), diff))
    except Exception as exc:  # noqa: BLE001 - one line back to the main process
        conn.send(f"worker on core {core}: {type(exc).__name__}: {exc}")


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

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

    python bench/bench_engine_overhead.py --short --model full --shared --workers 2 --rounds 2

With ``--workers`` the table also splits each side's CPU time into the time inside the models' forward
passes (text encoder, UNet, VAE decoder: the same calls on the same modules on both sides, the same
pixels) and the rest, the orchestration. The "matched" ratio is (raw's model time + the engine's
orchestration + the engine's cancel hooks inside the UNet, measured apart) / raw's time: the engine's
overhead without the swings of the model time itself, which on the shared 2-core machines reach ±15%
between runs of identical work, more than the 3% being measured.
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
                    (ew, ec, *_), (rw, rc, *_) = sides.run(job, prompt, i)
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
        base = engine.engine.runner.base
        self.model_cpu = 0.0  # CPU seconds inside the models' forward passes, this run so far
        # Timers on the shared models' outermost calls, the same for both sides (added after the check
        # above): the text encoder, the UNet, and the VAE's decoder (with its post-quant conv).
        for module in (base.text_encoder, base.unet, base.vae.post_quant_conv, base.vae.decoder):
            module.register_forward_pre_hook(self._enter)
            module.register_forward_hook(self._leave)

    def _enter(self, _module, _args) -> None:
        self._entered = time.process_time()

    def _leave(self, _module, _args, _out) -> None:
        self.model_cpu += time.process_time() - self._entered

    def run(self, job: dict, prompt: str, round_: int):
        """((wall, CPU, CPU inside the models), ...) of the engine and raw sides."""
        order = SIDES if round_ % 2 == 0 else SIDES[::-1]
        times = {}
        for kind in order:
            self.model_cpu = 0.0
            times[kind] = (*self.sides[kind].timed(job, prompt), self.model_cpu)
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
    hook_costs = []
    for conn in conns:
        reply = conn.recv()
        if not (isinstance(reply, tuple) and reply[0] == "ready"):
            raise SystemExit(f"a worker did not start: {reply}")
        hook_costs.append(reply[1])
    per_call = max(cost for cost, _ in hook_costs)
    unet_calls = hook_costs[0][1]
    print(f"the engine's cancel check: {per_call * 1e6:.2f} µs CPU per module call (the larger of the workers'), "
          f"{unet_calls} module calls per UNet forward: {per_call * unet_calls * 1000:.2f} ms per UNet call, "
          "added to the matched ratio as 'hooks'", flush=True)
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
            _table(results, per_call * unet_calls)
    finally:
        for conn in conns:
            conn.send(None)
        for proc in procs:
            proc.join(timeout=60)


def _table(results: dict, hook_seconds: float = 0.0) -> None:
    """Per row: the medians of each side's times and of the per-round ratios; "outside ms" is each
    side's CPU time outside the models' forward passes (the orchestration: scheduler, guidance, latents,
    callbacks, previews, image conversion, prompt handling), "matched ratio" the engine's job with the
    raw side's model time in place of its own: (raw inside + engine outside + hooks) / raw. Both sides run the
    same forward passes on the same modules (the same pixels; tests/engine/test_engine_work.py counts
    them; the engine runs the text encoder fewer times for a batch, which this ratio gives back to raw),
    so the matched ratio is the engine's overhead without the machine's swings in the model time, which
    on these machines vary by ±15% from run to run of identical work. Hooks the engine adds inside a
    model (the cancel check on each UNet block) are measured apart (cancel_hook_cost) and added back."""
    print(f"{'steps':>5} {'size':>5} {'batch':>5}  {'engine s':>9} {'raw s':>9} {'cpu ratio':>9} {'eng out ms':>10}"
          f" {'raw out ms':>10} {'matched':>8}  per-round cpu / matched ratios", flush=True)
    totals = [0.0, 0.0, 0.0]
    for (steps, size, batch), runs in results.items():
        if not runs:
            continue
        cpu = [(e[1], r[1]) for e, r in runs]
        outside = [(e[1] - e[2], r[1] - r[2]) for e, r in runs]
        hooks = hook_seconds * steps * batch  # one UNet call a step (CFG's two halves in one batch)
        matched = [(r[2] + e[1] - e[2] + hooks) / r[1] for e, r in runs]
        totals[0] += sum(e for e, _ in cpu)
        totals[1] += sum(r for _, r in cpu)
        totals[2] += sum(r[2] + e[1] - e[2] + hooks for e, r in runs)
        print(f"{steps:>5} {size:>5} {batch:>5}  {statistics.median(e for e, _ in cpu):>9.3f} "
              f"{statistics.median(r for _, r in cpu):>9.3f} {statistics.median(e / r for e, r in cpu):>9.3f} "
              f"{1000 * statistics.median(e for e, _ in outside):>10.1f} {1000 * statistics.median(r for _, r in outside):>10.1f}"
              f" {statistics.median(matched):>8.4f}  "
              + " ".join(f"{e / r:.3f}/{m:.4f}" for (e, r), m in zip(cpu, matched)), flush=True)
    print(f"all rows: engine {totals[0]:.1f} s CPU, raw {totals[1]:.1f} s CPU, ratio {totals[0] / totals[1]:.3f}; "
          f"matched {totals[2] / totals[1]:.4f}", flush=True)


def cancel_hook_cost(unet) -> tuple[float, int]:
    """(CPU seconds one cancel-check pre-hook adds to a module call, module calls in one UNet forward).
    The engine's cancel check within a step (engine.core.steps.cancel_within_steps, as the app runs every
    job) is a pre-hook on every block of the UNet: inside the model's time, so the matched ratio has it
    only through this figure. Measured on a chain of 1,000 identity modules, with and without the hooks,
    interleaved; the calls are counted on a 64 px forward of ``unet``."""
    import torch

    from engine.api import GenerationRequest
    from engine.core.job import Job
    from engine.core.steps import cancel_within_steps

    chain = torch.nn.Sequential(*(torch.nn.Identity() for _ in range(1000)))
    x, job = torch.zeros(1), Job(GenerationRequest(prompt="x"), cancel=threading.Event())
    plain, hooked = [], []
    for _ in range(15):
        t = time.process_time()
        for _ in range(20):
            chain(x)
        plain.append(time.process_time() - t)
        with cancel_within_steps([chain], job):
            t = time.process_time()
            for _ in range(20):
                chain(x)
            hooked.append(time.process_time() - t)
    per_call = max(0.0, (statistics.median(hooked) - statistics.median(plain)) / 20_000)
    calls = [0]
    handles = [m.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
               for m in unet.modules() if m is not unet]
    try:
        with torch.inference_mode():
            unet(torch.zeros(2, unet.config.in_channels, 8, 8), torch.tensor(500),
                 encoder_hidden_states=torch.zeros(2, 77, unet.config.cross_attention_dim))
    finally:
        for handle in handles:
            handle.remove()
    return per_call, calls[0]


def _shared_worker(model: str, core, conn) -> None:
    """A ``--workers`` process: SharedSides on one core and one torch thread; the first job of each
    image size is preceded by an untimed warm-up of both sides that also compares their pixels."""
    try:
        if core is not None:
            os.sched_setaffinity(0, {core})
        sides = SharedSides(model, 1)
        conn.send(("ready", cancel_hook_cost(sides.sides["engine"].engine.runner.base.unet)))
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

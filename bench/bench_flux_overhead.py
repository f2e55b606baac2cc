"""Engine.generate against raw diffusers ``FluxPipeline.__call__`` on the same FLUX.1 model: the
engine's overhead for the FLUX family.

The tiny FLUX.1 [dev] (random weights, ``easel make-test-model --family flux1-dev``), same prompt,
seed, steps and guidance; the two runs are interleaved so machine noise hits both alike, and the
median of the per-round ratios engine / raw is printed (wall and process CPU time), and the ratio of
the fastest CPU run of each side (the least disturbed by other processes on a shared machine). Goal:
<= 1.03.
The engine run includes what the app pays for: the prompt policy, a progress event every step, a
packed-latent preview every 2 steps, the in-step cancel hooks and the guarded decode.

By default every round has a prompt of its own (the same for both sides), so the engine encodes it
as raw diffusers does; ``--same-prompt`` repeats one prompt, where the engine's prompt cache skips
the encode (a regenerate or a new seed in the app) and raw diffusers encodes it every time.

    python bench/bench_flux_overhead.py [--rounds 9] [--size 256] [--steps 8] [--threads 1] [--same-prompt]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT, SEED = "a lighthouse on a cliff at dusk", 1234


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--same-prompt", action="store_true", help="one prompt for every round (prompt cache hits)")
    args = parser.parse_args()

    import torch
    from diffusers import FluxPipeline

    from engine.api import GenerationRequest
    from engine.engine import Engine
    from engine.families.flux.testmodel import make_flux_test_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_flux_test_model(Path(tmp) / "flux1-dev")
        engine = Engine(device="cpu")
        raw = FluxPipeline.from_pretrained(model, local_files_only=True)
        raw.set_progress_bar_config(disable=True)
        tokens = raw.tokenizer_2.model_max_length
        request = GenerationRequest(prompt=PROMPT, model=str(model), seed=SEED, steps=args.steps, width=args.size,
                                    height=args.size, guidance_scale=3.5, memory_preset="fast")
        events = []
        prompt = [PROMPT]

        def run_engine():
            engine.generate(request.replace(prompt=prompt[0]), events.append)

        def run_raw():
            with torch.inference_mode():
                raw(prompt[0], num_inference_steps=args.steps, width=args.size, height=args.size, guidance_scale=3.5,
                    max_sequence_length=tokens, generator=torch.Generator("cpu").manual_seed(SEED))

        run_engine(), run_raw()  # warm-up (load, first-call allocations)
        wall, cpu, best = [], [], {"engine": [], "raw": []}
        for index in range(args.rounds):
            prompt[0] = PROMPT if args.same_prompt else f"{PROMPT}, study {index + 1}"
            times = {}
            for name, fn in (("engine", run_engine), ("raw", run_raw)):
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                times[name] = (time.perf_counter() - w0, time.process_time() - c0)
            for name in best:
                best[name].append(times[name][1])
            wall.append(times["engine"][0] / times["raw"][0])
            cpu.append(times["engine"][1] / times["raw"][1])
        print(f"FLUX.1 tiny, {args.size}x{args.size}, {args.steps} steps, {args.rounds} rounds, "
              f"{'one prompt' if args.same_prompt else 'a new prompt each round'}, "
              f"{args.threads} thread(s): engine/raw median wall {statistics.median(wall):.3f}, "
              f"CPU {statistics.median(cpu):.3f}; fastest CPU run engine/raw {min(best['engine']) / min(best['raw']):.3f} "
              f"({min(best['engine']) * 1e3:.0f} / {min(best['raw']) * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()

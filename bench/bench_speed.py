"""Fast against Standard on the CPU: step time of full-size denoisers, compile time cold and warm.

Two full-size random-weight denoisers, fp32 on the CPU:

- the SD 1.5 UNet from the bundled config (``resources/configs/sd1``) at 512x512 (a 64x64 latent),
  batch 1;
- a FLUX.1 DiT block stack: diffusers' ``FluxTransformer2DModel`` with FLUX.1's real widths (24 heads
  x 128, joint attention 4096, pooled 768) but only ``--double``/``--single`` of its 19/38 blocks, at
  ``--dit-size`` with ``--dit-text`` text tokens.

Each goes through ``engine.core.speed.apply`` exactly as a job does (Standard, then Fast, the same
module switched back and forth), in interleaved rounds; the first step of each round is left out
(switching back may look up compiled code), the median of the rest is the step time. First compile
is the first Fast step minus a warm one. The warm-cache compile is the same first Fast step in a second
process (a fresh launch) reusing the compiler cache folder.

    python bench/bench_speed.py [--steps 3] [--rounds 2] [--double 1] [--single 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(kind: str, args):
    """(denoiser, inputs, request-like) for ``kind`` ("unet" or "dit"), random weights, fp32, CPU."""
    import torch

    torch.manual_seed(0)
    if kind == "unet":
        from diffusers import UNet2DConditionModel

        from engine import architectures as arch

        config = arch.component_configs("sd1")["unet"]
        model = UNet2DConditionModel.from_config(config).eval()
        side = 512 // 8
        inputs = dict(sample=torch.randn(1, 4, side, side), timestep=torch.tensor(500.0),
                      encoder_hidden_states=torch.randn(1, 77, config["cross_attention_dim"]), return_dict=False)
        size = 512
    else:
        from diffusers import FluxTransformer2DModel

        model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=args.double,
                                       num_single_layers=args.single, attention_head_dim=128, num_attention_heads=24,
                                       joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                                       axes_dims_rope=(16, 56, 56)).eval()
        size = args.dit_size
        tokens = (size // 16) ** 2
        side = size // 16
        ids = torch.zeros(side, side, 3)
        ids[..., 1] = torch.arange(side)[:, None]
        ids[..., 2] = torch.arange(side)[None, :]
        inputs = dict(hidden_states=torch.randn(1, tokens, 64), encoder_hidden_states=torch.randn(1, args.dit_text, 4096),
                      pooled_projections=torch.randn(1, 768), timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]),
                      img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(args.dit_text, 3), return_dict=False)
    params = sum(p.numel() for p in model.parameters())
    request = SimpleNamespace(speed="standard", width=size, height=size, guidance_scale=7.0, steps=args.steps)
    return model, inputs, request, params


def attr_name(model) -> str:
    return "unet" if type(model).__name__.startswith("UNet") else "transformer"


def step(model, inputs) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        model(**inputs)
    return time.perf_counter() - t0


def child(args) -> None:
    """The second launch: the first Fast step with the compiler cache the first launch left."""
    from engine.core import speed

    model, inputs, request, _ = build(args.child, args)
    pipe = SimpleNamespace(**{attr_name(model): model})
    speed.apply(pipe, SimpleNamespace(**{**vars(request), "speed": "fast"}), "cpu", data_dir=args.data_dir)
    first = step(model, inputs)
    warm = step(model, inputs)
    print(json.dumps({"first_fast_step_s": first, "warm_step_s": warm}))


def measure(kind: str, args) -> dict:
    from engine.core import speed

    model, inputs, request, params = build(kind, args)
    pipe = SimpleNamespace(**{attr_name(model): model})
    times = {"standard": [], "fast": []}
    first_fast = warm_fast = None
    parts = ()
    for r in range(args.rounds):
        for name in ("standard", "fast"):
            applied = speed.apply(pipe, SimpleNamespace(**{**vars(request), "speed": name}), "cpu",
                                  data_dir=args.data_dir)
            if name == "fast":
                parts = applied.parts
            run = [step(model, inputs) for _ in range(args.steps)]
            if name == "fast" and first_fast is None:
                first_fast, warm_fast = run[0], run[1]
            times[name] += run[1:]
            print(f"  {kind} round {r + 1} {name:8s} " + " ".join(f"{t:.2f}s" for t in run), flush=True)
    std, fast = statistics.median(times["standard"]), statistics.median(times["fast"])
    speed.reset(pipe)
    del model, pipe
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--data-dir", str(args.data_dir),
                          "--steps", str(args.steps), "--double", str(args.double), "--single", str(args.single),
                          "--dit-size", str(args.dit_size), "--dit-text", str(args.dit_text),
                          "--threads", str(args.threads)], capture_output=True, text=True, check=True)
    second = json.loads(out.stdout.strip().splitlines()[-1])
    return {"params_m": params / 1e6, "standard_step_s": std, "fast_step_s": fast, "ratio_standard_over_fast": std / fast,
            "first_compile_s": first_fast - warm_fast, "second_launch_compile_s":
            second["first_fast_step_s"] - second["warm_step_s"], "fast_parts": list(parts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps per round (the first is left out)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--double", type=int, default=1, help="FLUX double-stream blocks (FLUX.1 has 19)")
    parser.add_argument("--single", type=int, default=1, help="FLUX single-stream blocks (FLUX.1 has 38)")
    parser.add_argument("--dit-size", type=int, default=256, help="DiT image side in pixels (16 px a token)")
    parser.add_argument("--dit-text", type=int, default=64, help="DiT text tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=("unet", "dit"), default=None)
    parser.add_argument("--data-dir", type=Path, default=None, help="the compiler cache's data folder (default: a new one)")
    parser.add_argument("--child", choices=("unet", "dit"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return
    if args.data_dir is None:
        args.data_dir = Path(tempfile.mkdtemp(prefix="easel-bench-speed-"))
    print(f"CPU, {args.threads} torch thread(s), fp32, {args.rounds} interleaved rounds x {args.steps} steps; "
          f"compiler cache in {args.data_dir}", flush=True)
    results = {}
    for kind in ("unet", "dit"):
        if args.only and kind != args.only:
            continue
        r = results[kind] = measure(kind, args)
        what = ("SD 1.5 UNet (full size), 512x512, batch 1" if kind == "unet" else
                f"FLUX.1 blocks ({args.double} double + {args.single} single, real widths), "
                f"{args.dit_size}x{args.dit_size} + {args.dit_text} text tokens")
        print(f"{what}: {r['params_m']:.0f} M parameters\n"
              f"  step: standard {r['standard_step_s']:.2f}s, fast {r['fast_step_s']:.2f}s, "
              f"fast speed-up x{r['ratio_standard_over_fast']:.2f}  ({', '.join(r['fast_parts'])})\n"
              f"  compile: first {r['first_compile_s']:.1f}s, second launch (warm cache) {r['second_launch_compile_s']:.1f}s",
              flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

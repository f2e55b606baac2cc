"""The one-command GPU check: raw diffusers against Easel Standard, Fast and Draft, and VRAM per preset.

    python bench/gpu/check.py                 # on the GPU machine: JSON into $OUT
    python bench/gpu/check.py --tiny --out D  # the same script with tiny models on the CPU (a test runs it)

For each model in MODELS it builds the full-size architecture from Easel's bundled real configs
(``resources/configs/``) with random weights, directly on the device in half precision, and the
bundled CLIP tokenizers; it needs torch, transformers and diffusers and nothing else (no network,
no PySide6, no accelerate: the offload presets are reported as not run where accelerate is missing).
Then, per model:

1. it/s of the denoising loop (step 1 to the last step, each step synchronised) for raw diffusers
   (the pipeline called directly), Easel Standard, Fast and Draft (``Engine.generate`` on the same
   weights saved to a folder and loaded the way Easel loads a model), interleaved in ``--rounds``
   rounds; the median per variant;
2. the first Fast job (compiling, on an empty compiler cache) against a warm Fast job: the
   first-compile time;
3. peak device memory of a Standard job with every memory preset (``engine.devices.PRESETS``).

The JSON (``gpu-check.json``) is rewritten after every model, so a run cut short keeps what it
measured. ``--budget-s`` skips what would not fit (the check's goal: under 8 minutes on one
H200-class GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# One line per model: add FLUX.1 [dev], FLUX.2 [klein] and Z-Image here once Easel has their
# families (a bundled config and a make-test-model family name) - nothing else changes.
MODELS = (
    {"name": "sd15", "family": "sd15", "size": 512, "steps": 20},
    {"name": "sdxl", "family": "sdxl", "size": 1024, "steps": 20},
)
TINY = {"size": 64, "steps": 4, "rounds": 1}
VARIANTS = ("raw", "standard", "fast", "draft")
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
GOALS = ("Standard >= 1.0x raw diffusers", "Fast >= 1.3x raw on SDXL", "SD 1.5 512x512 Fast > 110 it/s")


def build_pipeline(family: str, tiny: bool, device: str, dtype):
    """Random-weight pipeline of a make-test-model family, created on ``device`` (no CPU copy)."""
    import torch

    import diffusers
    import transformers
    from engine import architectures as arch
    from engine import testmodels

    configs = testmodels.build_configs(family, "tiny" if tiny else "full")
    index = configs["model_index"]
    components = {}
    generator = torch.Generator(device).manual_seed(0)
    with torch.device(device):
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            if name in configs:
                library, class_name = index[name]
                cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
                module = testmodels._module(cls, configs[name])
                testmodels.randomize(module, generator, full=True)  # N(0, 0.02): finite in fp16
                components[name] = module.to(dtype).eval()
    for folder, kind in arch.tokenizer_kinds(arch.TEST_FAMILIES[family][0]).items():
        components[folder] = testmodels.tokenizer_for(kind)
    components["scheduler"] = getattr(diffusers, index["scheduler"][1]).from_config(configs["scheduler"])
    extra = {} if arch.TEST_FAMILIES[family][0] == "sdxl" else {
        "safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipe = testmodels.pipeline_class(family)(**components, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class StepClock:
    """Times steps 1..n of a denoising loop, synchronising the device at each step end."""

    def __init__(self, device: str):
        import torch

        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        self.times: list[float] = []

    def tick(self) -> None:
        self.sync()
        self.times.append(time.perf_counter())

    def rate(self) -> float:
        t = self.times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0


def run_raw(pipe, spec, device, seed=1):
    import torch

    clock = StepClock(device)

    def on_step(_pipe, _i, _t, kwargs):
        clock.tick()
        return kwargs

    with torch.inference_mode():
        pipe(prompt=PROMPT, num_inference_steps=spec["steps"], guidance_scale=7.0, width=spec["size"],
             height=spec["size"], generator=torch.Generator("cpu").manual_seed(seed), output_type="latent",
             callback_on_step_end=on_step)
    return clock.rate()


def run_easel(engine, path, spec, device, speed, preset="fast", steps=None, seed=1):
    from engine.api import GenerationRequest

    clock = StepClock(device)
    statuses = []

    def on_progress(p):
        if p.step >= 1:
            clock.tick()
        elif p.stage_name:
            statuses.append(p.stage_name)

    request = GenerationRequest(prompt=PROMPT, model=str(path), steps=steps or spec["steps"], guidance_scale=7.0,
                                width=spec["size"], height=spec["size"], seed=seed, speed=speed,
                                memory_preset=preset, sampler="Euler")
    started = time.perf_counter()
    result = engine.generate(request, on_progress=on_progress)
    return {"it_s": clock.rate(), "job_s": time.perf_counter() - started, "denoise_s": result.timings.denoise,
            "params": dict(result.params), "notices": list(result.notices), "statuses": statuses,
            "preset": result.settings.preset}


def peak_memory(device: str):
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def check_model(spec, args, device, dtype, work: Path, deadline: float) -> dict:
    import torch

    from engine.devices import PRESETS
    from engine.engine import Engine

    out: dict = {"size": spec["size"], "steps": spec["steps"], "skipped": []}
    t0 = time.perf_counter()
    raw = build_pipeline(spec["family"], args.tiny, device, dtype)
    out["build_s"] = time.perf_counter() - t0
    out["params_m"] = {k: sum(p.numel() for p in m.parameters()) / 1e6 for k, m in raw.components.items()
                       if hasattr(m, "parameters")}
    path = work / spec["name"]
    t0 = time.perf_counter()
    raw.save_pretrained(path, safe_serialization=True)
    out["save_s"] = time.perf_counter() - t0
    raw.to(device)
    engine = Engine(device=device, state_dir=args.data_dir)
    t0 = time.perf_counter()
    engine.load(str(path), "fast")
    out["easel_load_s"] = time.perf_counter() - t0

    # First Fast job on this model (compiles; the cache folder is empty unless --data-dir reuses one).
    standard = run_easel(engine, path, spec, device, "standard")
    first = run_easel(engine, path, spec, device, "fast")
    warm = run_easel(engine, path, spec, device, "fast")
    out["first_fast_job_s"] = first["job_s"]
    out["warm_fast_job_s"] = warm["job_s"]
    out["first_compile_s"] = first["denoise_s"] - warm["denoise_s"]
    out["compile_status_shown"] = first["statuses"]
    out["speed_params"] = {"standard": standard["params"], "fast": warm["params"]}
    out["notices"] = sorted(set(standard["notices"] + first["notices"] + warm["notices"]))

    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        if time.perf_counter() > deadline:
            out["skipped"].append(f"rounds {r + 1}-{args.rounds} (time budget)")
            break
        for variant in VARIANTS:
            if variant == "raw":
                rates[variant].append(run_raw(raw, spec, device))
            else:
                res = run_easel(engine, path, spec, device, variant)
                rates[variant].append(res["it_s"])
                out["speed_params"][variant] = res["params"]
                out["notices"] = sorted(set(out["notices"] + res["notices"]))
    out["it_s"] = {v: statistics.median(x) for v, x in rates.items() if x}
    out["it_s_rounds"] = rates
    base = out["it_s"].get("raw")
    if base:
        out["ratio_vs_raw"] = {v: r / base for v, r in out["it_s"].items()}

    # Peak memory of a Standard job with each memory preset (the raw copy gone first).
    raw.to("cpu")
    del raw
    out["peak_vram_gib"] = {}
    for preset in PRESETS:
        if time.perf_counter() > deadline:
            out["skipped"].append(f"preset {preset} (time budget)")
            continue
        reset_peak(device)
        try:
            res = run_easel(engine, path, spec, device, "standard", preset=preset, steps=2)
        except (ImportError, RuntimeError) as exc:  # offload presets need accelerate
            if isinstance(exc, torch.OutOfMemoryError):
                raise
            out["peak_vram_gib"][preset] = None
            out["skipped"].append(f"preset {preset}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            continue
        out["peak_vram_gib"][preset] = peak_memory(device)
        out.setdefault("preset_job_s", {})[preset] = res["job_s"]
    engine.unload()
    del engine
    reset_peak(device)
    shutil.rmtree(path, ignore_errors=True)
    return out


def goals(models: dict) -> dict:
    result = {}
    ratios = [m["ratio_vs_raw"]["standard"] for m in models.values() if "ratio_vs_raw" in m]
    if ratios:
        result[GOALS[0]] = min(ratios) >= 1.0
    if "sdxl" in models and "ratio_vs_raw" in models["sdxl"]:
        result[GOALS[1]] = models["sdxl"]["ratio_vs_raw"].get("fast", 0) >= 1.3
    if "sd15" in models and "it_s" in models["sd15"]:
        result[GOALS[2]] = models["sd15"]["it_s"].get("fast", 0) > 110
    return result


def print_table(report: dict) -> None:
    print(f"\n{report['device']} | torch {report['torch']} | diffusers {report['diffusers']} | "
          f"{'tiny models, CPU' if report['tiny'] else 'full-size random-weight models'}")
    print(f"{'model':6s} {'size':>5s} " + " ".join(f"{v + ' it/s':>14s}" for v in VARIANTS)
          + f" {'fast/raw':>9s} {'compile s':>10s}")
    for name, m in report["models"].items():
        if "error" in m:
            print(f"{name:6s} error: {m['error']}")
            continue
        it = m.get("it_s", {})
        print(f"{name:6s} {m['size']:5d} " + " ".join(f"{it.get(v, 0):14.2f}" for v in VARIANTS)
              + f" {m.get('ratio_vs_raw', {}).get('fast', 0):9.2f} {m.get('first_compile_s', 0):10.1f}")
        vram = " ".join(f"{p} {v:.2f}" if v is not None else f"{p} -" for p, v in m.get("peak_vram_gib", {}).items())
        print(f"       peak VRAM GiB per preset: {vram}")
        if m.get("skipped"):
            print(f"       skipped: {'; '.join(m['skipped'])}")
    for goal, met in report.get("goals", {}).items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Easel's one-command GPU check (see the module docstring)")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (the test run's mode)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu-check.json (default: $OUT)")
    parser.add_argument("--models", default=None, help="comma-separated subset of: "
                        + ", ".join(m["name"] for m in MODELS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per model")
    parser.add_argument("--steps", type=int, default=None, help="steps per job (default: each model's)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Easel data folder (its compile-cache/ is reused; default: a new temporary one)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop starting new phases after this")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode for Fast (EASEL_COMPILE_MODE)")
    args = parser.parse_args(argv)
    if not args.out:
        print("check.py: say where to write the results: --out DIR (or set OUT)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    deadline = started + args.budget_s
    if args.compile_mode:
        os.environ["EASEL_COMPILE_MODE"] = args.compile_mode

    import torch

    import diffusers

    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("check.py: no CUDA GPU here; use --tiny for the CPU run", file=sys.stderr)
        return 2
    dtype = torch.float32 if args.tiny else torch.float16
    work = Path(tempfile.mkdtemp(prefix="easel-gpu-check-"))
    if args.data_dir is None:
        args.data_dir = work / "data"
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        args.rounds = min(args.rounds, TINY["rounds"])
    wanted = set(args.models.split(",")) if args.models else None
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
        "tiny": args.tiny, "rounds": args.rounds, "compile_mode": os.environ.get("EASEL_COMPILE_MODE", "default"),
        "models": {},
    }
    for spec in MODELS:
        if wanted and spec["name"] not in wanted:
            continue
        spec = dict(spec)
        if args.tiny:
            spec.update(size=TINY["size"], steps=TINY["steps"])
        if args.steps:
            spec["steps"] = args.steps
        if time.perf_counter() > deadline:
            report["models"][spec["name"]] = {"error": "not run: time budget spent"}
            continue
        print(f"[{time.perf_counter() - started:6.1f}s] {spec['name']} {spec['size']}x{spec['size']}, "
              f"{spec['steps']} steps ...", flush=True)
        try:
            report["models"][spec["name"]] = check_model(spec, args, device, dtype, work, deadline)
        except Exception as exc:  # noqa: BLE001  (one model failing must not lose the others' figures)
            report["models"][spec["name"]] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        report["goals"] = goals(report["models"])
        report["pyside6_imported"] = "PySide6" in sys.modules
        report["wall_s"] = time.perf_counter() - started
        (out_dir / "gpu-check.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    report["wall_s"] = time.perf_counter() - started
    (out_dir / "gpu-check.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print_table(report)
    print(f"wrote {out_dir / 'gpu-check.json'} in {report['wall_s']:.0f}s")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any("error" in m for m in report["models"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())

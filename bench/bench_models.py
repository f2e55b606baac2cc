"""Model library and loading benchmarks (issue #6). Prints figures measured in this one run.

1. Scanning 500 model files (tiny real safetensors of every kind, in A1111 / ComfyUI folders):
   cold (headers read) and warm (cache hit: stat only). Goal: warm <= 2 s.
2. Warm model switch between two tiny models: Engine.load(A) after B, with the previous model kept
   in RAM (the engine's default) and, for comparison, reloaded from the OS file cache. Goal: <= 0.5 s.
3. Engine.load against raw diffusers ``from_pretrained`` of the same folder (median of 5 each, as a
   ratio). Goal: <= 1.1x.

Run: ``python bench/bench_models.py``
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_500(root: Path) -> Path:
    from engine.testaddons import make_kind_file

    kinds = [("checkpoint", "sd1"), ("checkpoint", "sdxl"), ("inpaint", "sd2"), ("lora", "sd1"), ("lora", "sdxl"),
             ("embedding", "sd1"), ("vae", "sd1"), ("upscaler", "sd1"), ("sd3", "sd1"), ("lora", "sd2")]
    webui = root / "stable-diffusion-webui" / "models"
    comfy = root / "ComfyUI" / "models"
    for i in range(500):
        kind, family = kinds[i % len(kinds)]
        base = webui if i % 2 else comfy
        make_kind_file(base / f"group{i % 7}" / f"{kind}-{family}-{i:03d}.safetensors", kind, family)
    return root


def bench_scan() -> None:
    from engine.models import ModelLibrary

    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        root = make_500(Path(tmp) / "installs")
        folders = [str(root / "stable-diffusion-webui" / "models"), str(root / "ComfyUI" / "models")]
        state = Path(tmp) / "state"
        t0 = time.perf_counter()
        entries = ModelLibrary(folders, include_defaults=False, state_dir=state).scan()
        cold = time.perf_counter() - t0
        warm_runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            again = ModelLibrary(folders, include_defaults=False, state_dir=state).scan()
            warm_runs.append(time.perf_counter() - t0)
        assert len(entries) == len(again) == 500
        warm = statistics.median(warm_runs)
        print(f"scan 500 files: cold {cold:.3f} s, warm {warm:.3f} s (median of 5; goal <= 2 s) "
              f"-> {'OK' if warm <= 2 else 'MISSED'}")


def bench_loading() -> None:
    import torch

    from engine.engine import Engine
    from engine.testmodels import make_test_model, pipeline_class

    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        a = make_test_model(Path(tmp) / "a", "sd15", seed=0)
        b = make_test_model(Path(tmp) / "b", "sd15", seed=1)
        engine = Engine(device="cpu")
        engine.load(str(a))
        engine.load(str(b))  # both now in the OS file cache
        switches = []
        for i in range(6):
            target = a if i % 2 == 0 else b
            t0 = time.perf_counter()
            engine.load(str(target))
            switches.append(time.perf_counter() - t0)
        switch = statistics.median(switches)
        print(f"warm model switch (tiny SD1 folder, previous model kept in RAM): median {switch:.3f} s over 6, "
              f"max {max(switches):.3f} s (goal <= 0.5 s) -> {'OK' if switch <= 0.5 else 'MISSED'}")
        nocache = Engine(device="cpu", keep_models=0)
        nocache.load(str(a))
        reloads = []
        for i in range(4):
            t0 = time.perf_counter()
            nocache.load(str(b if i % 2 == 0 else a))
            reloads.append(time.perf_counter() - t0)
        nocache.unload()
        print(f"model switch without the RAM cache (files in the OS cache, reload from disk): "
              f"median {statistics.median(reloads):.3f} s over 4")

        cls = pipeline_class("sd15")
        ours, raw = [], []
        for _ in range(5):
            engine.unload()
            t0 = time.perf_counter()
            engine.load(str(a))
            ours.append(time.perf_counter() - t0)
            engine.unload()
            t0 = time.perf_counter()
            pipe = cls.from_pretrained(str(a), dtype=torch.float32, local_files_only=True, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
            pipe.to("cpu")
            raw.append(time.perf_counter() - t0)
            del pipe
        o, r = statistics.median(ours), statistics.median(raw)
        print(f"load tiny SD1 folder: Engine.load {o:.3f} s, diffusers from_pretrained {r:.3f} s "
              f"-> ratio {o / r:.2f}x (goal <= 1.1x) -> {'OK' if o / r <= 1.1 else 'MISSED'}")


if __name__ == "__main__":
    bench_scan()
    bench_loading()

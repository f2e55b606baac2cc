"""Tiled vs single-pass GAN upscale of a 2048x2048 image on CPU: time and peak memory, one run.

Each variant runs in its own process so its peak RSS (ru_maxrss) is its own. The model is a
random-weight ESRGAN (RRDB) built here; --filters/--blocks set its size (Real-ESRGAN x4plus is 64/23,
far slower on CPU: the ratio, not the absolute time, is the figure).

    python bench/bench_upscale.py [--size 2048] [--tile 512] [--filters 16] [--blocks 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
import numpy as np
from PIL import Image
from engine.upscale import load_upscaler, upscale_image
model, size, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
up = load_upscaler(model)
rng = np.random.default_rng(0)
img = Image.fromarray((rng.random((size // 16, size // 16, 3)) * 255).astype('uint8')).resize((size, size))
upscale_image(up, img.resize((64, 64)), tile=0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
out = upscale_image(up, img, tile=tile, overlap=32).image
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "grown_mb": (peak - base) / 1024, "out": out.size}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--blocks", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from engine.testmodels import save_safetensors
    from engine.upscale import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "esrgan.safetensors"
        torch.manual_seed(0)
        save_safetensors(model, ESRGAN(num_filters=args.filters, num_blocks=args.blocks, scale=4).state_dict())
        runs = {}
        for name, tile in (("tiled", args.tile), ("single pass", 0)):
            done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(args.size), str(tile)], cwd=ROOT,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name}: failed ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})")
                continue
            runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
            r = runs[name]
            print(f"{name:12s} {args.size}x{args.size} -> {r['out'][0]}x{r['out'][1]}: {r['seconds']:.1f} s, "
                  f"peak RSS {r['peak_mb']:.0f} MB (+{r['grown_mb']:.0f} MB during the upscale)")
        if len(runs) == 2:
            t, s = runs["tiled"], runs["single pass"]
            print(f"tiled/single-pass: time {t['seconds'] / s['seconds']:.2f}x, peak memory {t['peak_mb'] / s['peak_mb']:.2f}x, "
                  f"growth {t['grown_mb'] / max(s['grown_mb'], 1):.3f}x")


if __name__ == "__main__":
    main()

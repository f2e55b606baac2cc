"""The detail upscale (tiled img2img, engine.core.detail) of a 2048x2048 image to 4096x4096 on CPU with the
tiny SD test model: peak memory and time against the tile size, one run.

Each tile size runs in its own fresh process; its peak memory is that process's RSS high-water mark
(``ru_maxrss``), and "grown" is the mark's rise during the upscale (after the model is loaded and one tiny
warm-up job has run). RSS rather than tracemalloc, because torch's CPU allocator (the activations, which
are what the tile size bounds) is outside Python's allocator. The model is the tiny random-weight SD model
(engine.testmodels; its 2-block VAE works at 1/2 of the pixels, so a tile's latent is half its size): the
figures measure how the mechanism scales with the tile, not a real model's speed. One denoising step per
tile (2 steps at strength 0.5), Lanczos enlarging, overlap = tile / 8. The rows are tile sizes 512, 1024 and
2048 px (peak memory by tile size); the load average is printed before and after (the machine is shared).
The image's one noise field (engine.core.noise) is part of the growth: a few fields at the full latent size
(with the tiny 2x VAE 4 x 2048 x 2048 float32 = 64 MB each; with a real 8x VAE, 4 MB each at 4096 px).

    python bench/bench_detail_upscale.py [--size 2048] [--scale 2] [--tiles 512,1024,2048] [--stop-after N]

``--stop-after N`` cancels each row when its tile N+1 starts (the rows' tiles are all of one size, so the
peak is reached in the first): on the shared 2-core machine a whole 2048 px row takes hours, since the
tiny UNet's self-attention over a 2048 px tile's 512 x 512 latent level is quadratic in its area.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, threading, time
import numpy as np
from PIL import Image
from engine.api import Cancelled, GenerationRequest
from engine.engine import Engine
model, size, scale, tile, stop_after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
img = Image.fromarray((rng.random((size // 16, size // 16, 3)) * 255).astype('uint8')).resize((size, size))
engine = Engine(device="cpu")
def request(source, out, tile):
    return GenerationRequest(prompt="a field of flowers", model=model, mode="img2img", init_image=source, steps=2,
                             strength=0.5, width=out, height=out, seed=1, tile=tile, tile_overlap=tile // 8)
engine.generate(request(img.resize((64, 64)), 128, 64))  # load + warm up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tiles, cancel = [], threading.Event()
def on_progress(p):
    tiles.append((p.stage, p.stages))
from engine.core import detail
real_run_tiled = detail.run_tiled
def run_tiled(*args, **kwargs):  # --stop-after: the cancel set as tile N is blended in (decoded, its peak passed)
    args, inner = list(args), args[6]
    def on_tile(done, total, out, rows):
        if stop_after and done >= stop_after:
            cancel.set()
        inner(done, total, out, rows)
    args[6] = on_tile
    return real_run_tiled(*args, **kwargs)
detail.run_tiled = run_tiled
t = time.perf_counter()
try:
    out = engine.generate(request(img, size * scale, tile), on_progress=on_progress, cancel=cancel).images[0].size
except Cancelled:
    out = None
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
done = tiles[-1][1] if out else stop_after
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "grown_mb": (peak - base) / 1024,
                  "tiles": tiles[-1][1], "done": done, "out": out}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--tiles", default="512,1024,2048")
    ap.add_argument("--stop-after", type=int, default=0, help="cancel each row after this many tiles (0: all)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from engine.testmodels import make_test_model

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print("load average before: %.2f %.2f %.2f" % os.getloadavg(), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_test_model(Path(tmp) / "sd15")
        rows = []
        for tile in (int(t) for t in args.tiles.split(",")):
            proc = subprocess.run([sys.executable, "-c", CHILD, str(model), str(args.size), str(args.scale), str(tile),
                                   str(args.stop_after)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            data = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((tile, data))
            print(f"tile {tile}: {data}", file=sys.stderr, flush=True)
    out = args.size * args.scale
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    rows.sort()
    print(f"detail upscale {args.size}x{args.size} -> {out}x{out}, tiny SD model, CPU, 1 step per tile, Lanczos first")
    print(f"{'tile px':>8} {'tiles':>6} {'run':>5} {'peak RSS MB':>12} {'grown MB':>9} {'seconds':>8}")
    for tile, d in rows:
        print(f"{tile:>8} {d['tiles']:>6} {d['done']:>5} {d['peak_mb']:>12.0f} {d['grown_mb']:>9.0f} {d['seconds']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

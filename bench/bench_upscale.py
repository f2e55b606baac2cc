"""Tiled vs single-pass GAN upscale of a 2048x2048 image on CPU: time and peak memory, one run.

Each variant runs in its own fresh process, and its peak memory is that process's RSS high-water mark
(``ru_maxrss``) minus the mark just before the upscale. RSS rather than tracemalloc because torch's CPU
allocator (the activations, which are what tiling bounds) sits outside Python's allocator, where
tracemalloc cannot see it; a process per variant so one variant's high-water mark cannot hide the
other's. Both variants load the same weights and upscale the same image in the same run.

The models are random-weight (speed and memory do not depend on the weight values) at real sizes:

- ``--arch compact`` (default): SRVGGNetCompact, 64 features, 32 convs, x4: the realesr-general-x4v3
  architecture. Its convs run at the input's resolution (pixel shuffle at the end), so one 2048x2048 pass
  fits in a few GB and can be compared with tiling on a 24 GB machine.
- ``--arch esrgan``: RRDBNet, ``--filters`` 64 and ``--blocks`` 23 by default: Real-ESRGAN x4plus. Its last
  convs run at 2x and 4x the input's size with 64 channels: for a 2048x2048 input one 8192x8192x64 fp32
  activation is 17 GB, and a conv holds its input and output, so the single pass is skipped (with the
  estimate printed) when it would need more than half of this machine's RAM. Tiling is the only way to
  run it here.

    python bench/bench_upscale.py [--arch compact|esrgan] [--size 2048] [--tile 512] [--filters F] [--blocks B]
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


def single_pass_estimate_gb(arch: str, size: int, filters: int) -> float:
    """Activation memory the largest layer of one whole-image pass holds (its input and output, fp32)."""
    if arch == "esrgan":  # the conv after the second nearest-neighbour 2x upsample, at 4x the input's size
        return 2 * (4 * size) ** 2 * filters * 4 / 1e9
    return 2 * size**2 * filters * 4 / 1e9  # compact: every conv at the input's size; shuffle at the end


def ram_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=("compact", "esrgan"), default="compact")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--filters", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=None, help="RRDB blocks (esrgan, default 23) or convs (compact, 32)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from engine.testmodels import save_safetensors
    from engine.upscale import import_spandrel

    import_spandrel()
    if args.arch == "esrgan":
        from spandrel.architectures.ESRGAN import ESRGAN

        blocks = args.blocks or 23
        net = ESRGAN(num_filters=args.filters, num_blocks=blocks, scale=4)
        label = f"RRDBNet {args.filters}x{blocks} x4 (Real-ESRGAN x4plus size)" if (args.filters, blocks) == (64, 23) \
            else f"RRDBNet {args.filters}x{blocks} x4"
    else:
        from spandrel.architectures.Compact import Compact

        blocks = args.blocks or 32
        net = Compact(num_feat=args.filters, num_conv=blocks, upscale=4)
        label = f"SRVGGNetCompact {args.filters}x{blocks} x4" + (" (realesr-general-x4v3 size)"
                                                                  if (args.filters, blocks) == (64, 32) else "")
    params = sum(p.numel() for p in net.parameters())
    print(f"model: {label}, {params / 1e6:.2f} M parameters, random weights; torch threads: {torch.get_num_threads()}; "
          f"RAM {ram_gb():.0f} GB; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "upscaler.safetensors"
        torch.manual_seed(0)
        save_safetensors(model, net.state_dict())
        del net
        runs = {}
        for name, tile in (("tiled", args.tile), ("single pass", 0)):
            if tile == 0:
                need = single_pass_estimate_gb(args.arch, args.size, args.filters)
                if need > ram_gb() / 2:
                    print(f"{name:12s} skipped: its largest layer alone holds about {need:.0f} GB of activations, "
                          f"more than half of this machine's {ram_gb():.0f} GB")
                    continue
            done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(args.size), str(tile)], cwd=ROOT,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name}: failed ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})")
                continue
            runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
            r = runs[name]
            print(f"{name:12s} {args.size}x{args.size} -> {r['out'][0]}x{r['out'][1]}"
                  f"{f' in {tile}px tiles' if tile else ''}: {r['seconds']:.1f} s, "
                  f"peak RSS {r['peak_mb']:.0f} MB (+{r['grown_mb']:.0f} MB during the upscale)")
        if len(runs) == 2:
            t, s = runs["tiled"], runs["single pass"]
            print(f"tiled/single-pass: time {t['seconds'] / s['seconds']:.2f}x, peak RSS {t['peak_mb'] / s['peak_mb']:.2f}x, "
                  f"growth during the upscale {t['grown_mb'] / max(s['grown_mb'], 1):.3f}x")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

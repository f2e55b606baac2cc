"""Bundle start-up: process start to main window shown, for the PyInstaller bundle against the source.

Each launch is a fresh process with a fresh data folder (offscreen Qt). "Cold" is the first launch
after the kernel's page cache was dropped (needs root: /proc/sys/vm/drop_caches), as after a reboot;
without root, the first launch of this run is reported instead and labelled so. Then N warm launches
of the bundle and of `python -m desktop_app` alternate, and their medians are compared.

    python bench/bench_bundle_startup.py [--bundle dist/easel/easel] [--runs 5] [--no-drop-caches]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_window(argv: list[str]) -> float:
    env = dict(os.environ, EASEL_REPORT_SHOWN="1", EASEL_QUIT_WHEN_SHOWN="1", QT_QPA_PLATFORM="offscreen")
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as data:
        t0 = time.time()
        out = subprocess.run([*argv, "--data-dir", data], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    for line in out.stdout.splitlines():
        if line.startswith("EASEL_WINDOW_SHOWN "):
            return float(line.split()[1]) - t0
    raise RuntimeError(f"the app did not report its window (exit {out.returncode}): {out.stdout[-500:]} {out.stderr[-1500:]}")


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", default=str(ROOT / "dist" / "easel" / "easel"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-drop-caches", action="store_true")
    args = parser.parse_args()
    bundle = [str(Path(args.bundle).resolve())]
    source = [sys.executable, "-m", "desktop_app"]

    dropped = not args.no_drop_caches and drop_caches()
    cold = time_window(bundle)
    label = "cold (page cache dropped)" if dropped else "first launch of this run (page cache NOT dropped)"
    warm_bundle, warm_source = [], []
    time_window(source)
    for _ in range(args.runs):
        warm_bundle.append(time_window(bundle))
        warm_source.append(time_window(source))
    b, s = statistics.median(warm_bundle), statistics.median(warm_source)
    print(f"bundle {label}: process start -> window shown {cold:.2f} s")
    print(f"bundle warm, median of {args.runs}: {b:.2f} s  (min {min(warm_bundle):.2f}, max {max(warm_bundle):.2f})")
    print(f"source (python -m desktop_app) warm, median of {args.runs}: {s:.2f} s  "
          f"(min {min(warm_source):.2f}, max {max(warm_source):.2f})")
    print(f"ratio bundle / source (warm): {b / s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bundle start-up: process start to main window shown, for the PyInstaller bundle against the source.

Each launch is a fresh process with a fresh data folder (offscreen Qt). "Cold" launches come right
after every file of the bundle was evicted from the kernel's page cache (posix_fadvise DONTNEED, file
by file: as after a reboot or a fresh install, without disturbing the rest of the machine), so the
app's ~1 GB is read from disk. "Warm" launches find it cached. Warm launches of the bundle and of
`python -m desktop_app` alternate, and their medians are compared.

    python bench/bench_bundle_startup.py [--bundle dist/easel/easel] [--runs 5]
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


def evict(folder: Path) -> int:
    """Drop the folder's files from the page cache; returns how many files were evicted."""
    count = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", default=str(ROOT / "dist" / "easel" / "easel"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()
    exe = Path(args.bundle).resolve()
    bundle = [str(exe)]
    source = [sys.executable, "-m", "desktop_app"]

    colds = []
    for _ in range(args.cold_runs):
        files = evict(exe.parent)
        colds.append(time_window(bundle))
    warm_bundle, warm_source = [], []
    time_window(source)
    for _ in range(args.runs):
        warm_bundle.append(time_window(bundle))
        warm_source.append(time_window(source))
    b, s = statistics.median(warm_bundle), statistics.median(warm_source)
    print(f"bundle cold ({files} files evicted from the page cache before each launch), median of {args.cold_runs}: "
          f"process start -> window shown {statistics.median(colds):.2f} s  (min {min(colds):.2f}, max {max(colds):.2f})")
    print(f"bundle warm, median of {args.runs}: {b:.2f} s  (min {min(warm_bundle):.2f}, max {max(warm_bundle):.2f})")
    print(f"source (python -m desktop_app) warm, median of {args.runs}: {s:.2f} s  "
          f"(min {min(warm_source):.2f}, max {max(warm_source):.2f})")
    print(f"ratio bundle / source (warm): {b / s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

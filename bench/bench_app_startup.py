"""Start-up benchmark: process start to main window shown, against `import torch, diffusers`.

Both are measured in this run, each as a fresh process, N times; medians are compared.
Goal: window <= 1.0 s and window / import ratio <= 0.12.

    python bench/bench_app_startup.py [--runs 5]
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


def _user_env(**extra: str) -> dict[str, str]:
    # A user's Python caches compiled modules (__pycache__) after the first launch, and pip compiled
    # torch and diffusers at install time. Some build machines export PYTHONDONTWRITEBYTECODE=1, which
    # would make every launch recompile Easel's own modules from source (~150 ms) while the baseline
    # keeps its bytecode: measure both sides the way a user's machine runs them.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def time_window(data_dir: str) -> float:
    env = _user_env(EASEL_REPORT_SHOWN="1", EASEL_QUIT_WHEN_SHOWN="1")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "desktop_app", "--data-dir", data_dir], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    for line in out.stdout.splitlines():
        if line.startswith("EASEL_WINDOW_SHOWN "):
            return float(line.split()[1]) - t0
    raise RuntimeError(f"the app did not report its window: {out.stdout} {out.stderr}")


def time_import() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, diffusers"], cwd=ROOT, check=True, capture_output=True,
                   env=_user_env())
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    windows, imports = [], []
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        # Warm the OS file cache for both, as a user's second launch would be; the first launch also
        # writes PySide's support files (desktop_app/pyside_support.py), as it does for a user.
        time_window(tmp)
        time_import()
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            windows.append(time_window(tmp))
            imports.append(time_import())
    w, i = statistics.median(windows), statistics.median(imports)
    print(f"window shown (process start -> shown), median of {args.runs}: {w:.3f} s  (min {min(windows):.3f}, max {max(windows):.3f})")
    print(f"python -c 'import torch, diffusers', median of {args.runs}: {i:.3f} s  (min {min(imports):.3f}, max {max(imports):.3f})")
    print(f"ratio window / import: {w / i:.3f}   goal: window <= 1.0 s, ratio <= 0.12  ->  "
          f"{'PASS' if w <= 1.0 and w / i <= 0.12 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

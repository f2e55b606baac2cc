"""Quit during a real 4096x4096 CPU job: how long from Quit to the process's end, and what is kept.

The window (offscreen) runs the real engine on the tiny SD 1.5 test model at 4096x4096, 20 steps;
20 s into the job (loaded, inside a step that takes minutes on a CPU) the window is closed with
"keep the queue". The parent measures from the child's QUIT line to its exit and checks that the
settings and the unfinished job were saved for the next start. Goal (issue 13): exit within 5 s.

    python bench/bench_quit_huge_job.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, sys, time
from pathlib import Path
from desktop_app import app as app_module
from engine.testmodels import make_test_model

data = Path(sys.argv[1])
model = data / "models" / "sd15-tiny"
make_test_model(model, "sd15")

def on_shown(studio):
    studio.window.ask_quit = lambda: "keep"

    async def drive():
        await studio.bridge.wait_ready()
        while studio.catalog.scanning or not studio.catalog.usable:
            await asyncio.sleep(0.05)
        p = studio.params
        p.model, p.prompt, p.width, p.height, p.steps = str(model), "a huge lighthouse", 4096, 4096, 20
        studio.actions.confirm_long_job = lambda _line: True
        studio.actions.generate()
        await asyncio.sleep(20)
        print(f"QUIT {time.time():.3f}", flush=True)
        studio.window.close()

    asyncio.get_running_loop().create_task(drive())

app_module.run([], data_dir=str(data), on_shown=on_shown)
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen", "EASEL_SCAN_DEFAULT_LOCATIONS": "0"}
        proc = subprocess.Popen([sys.executable, "-u", "-c", CHILD, tmp], env=env, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        quit_at = None
        for line in proc.stdout:
            if line.startswith("QUIT "):
                quit_at = float(line.split()[1])
        proc.wait(timeout=600)
        ended = time.time()
        if quit_at is None:
            sys.exit(f"the child never quit (exit {proc.returncode}): {proc.stderr.read()[-2000:]}")
        session = json.loads((Path(tmp) / "session" / "session.json").read_text())
        kept = [job["request"]["prompt"] for job in session.get("jobs", [])]
        settings = json.loads((Path(tmp) / "settings.json").read_text())["parameters"]
        print(f"quit during a 4096x4096 CPU job: process ended {ended - quit_at:.2f} s after Quit (goal <= 5 s), "
              f"exit code {proc.returncode}; jobs kept for the next start: {kept}; "
              f"settings saved: {settings['width']}x{settings['height']}, prompt {settings['prompt']!r}")


if __name__ == "__main__":
    main()

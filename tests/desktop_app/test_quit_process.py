"""A whole process: Quit while the engine thread is stuck inside one long step still ends the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json, sys
from pathlib import Path
from desktop_app import app as app_module, bridge as bridge_module
from tests.desktop_app.fakes import FakeEngine, make_fake_model

data = Path(sys.argv[1])
model = make_fake_model(data / "models" / "fake.safetensors")
engine = FakeEngine()
engine.hold_at_step, engine.stuck = 1, True  # one step that never looks at the cancel
bridge_module.QUIT_WAIT_SECONDS = 0.5

def on_shown(studio):
    studio.window.ask_quit = lambda: "keep"  # the question a quit with work asks: keep it for next time

    async def drive():
        await studio.bridge.wait_ready()
        while studio.catalog.scanning or not studio.catalog.usable:
            await asyncio.sleep(0.02)
        p = studio.params
        p.model, p.prompt, p.width, p.height, p.steps = str(model), "stuck", 64, 64, 4
        studio.actions.generate()
        while not engine.held.is_set():
            await asyncio.sleep(0.02)
        print("HELD", flush=True)
        studio.window.close()

    asyncio.get_running_loop().create_task(drive())

code = app_module.run([], data_dir=str(data), engine_factory=lambda: engine, on_shown=on_shown)
print("RETURNED", code, flush=True)  # not reached: the process exits without joining the engine thread
"""


def test_quit_during_a_step_that_ignores_the_cancel_ends_the_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen", "EASEL_SCAN_DEFAULT_LOCATIONS": "0"}
    # The timeout only keeps a broken build from hanging the suite: without the bounded quit the
    # process never ends (the engine's step is released by nothing).
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert "HELD" in done.stdout, done.stderr
    assert done.returncode == 0, done.stderr
    assert "quitting without waiting for it" in done.stderr
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["parameters"]["prompt"] == "stuck"  # what the user typed was saved

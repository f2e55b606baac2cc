"""The README's set-up commands are the ones CI runs, and they name the files they rely on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _code_lines(text: str) -> list[str]:
    blocks = re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [l.strip() for l in (ROOT / ".ci/run").read_text().splitlines() if l.strip() and not l.startswith("#")]
    test_command = ci_lines[-1]
    assert test_command.endswith("python -m pytest")
    assert test_command in _code_lines((ROOT / "README.md").read_text())


def test_readme_install_command_launches_easel_with_the_same_dependencies():
    lines = _code_lines((ROOT / "README.md").read_text())
    launch = next(l for l in lines if l.startswith("python3 -m venv") and l.endswith(".venv/bin/easel"))
    test = next(l for l in lines if l.startswith("python3 -m venv") and l.endswith("python -m pytest"))
    # The same pinned torch and the same no-deps spandrel in both (no CUDA download, no torchvision).
    for needle in ("torch==2.13.0", "--no-deps spandrel=="):
        assert needle in launch and needle in test

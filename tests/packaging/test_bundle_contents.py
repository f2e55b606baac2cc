"""What the bundle leaves out (packaging/bundle_contents.py) must not be something the app imports.

A full build takes many minutes; these run the engine self-test in plain Python with the excluded
modules made unimportable, as they are in the bundle, in about a minute.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))
import bundle_contents  # noqa: E402


def test_app_works_without_what_the_bundle_leaves_out():
    done = subprocess.run([sys.executable, str(ROOT / "packaging" / "check_contents.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^(\d+)/\1 checks passed$", done.stdout, re.M), done.stdout[-2000:]
    assert "transformers model families the app imports are all kept" in done.stdout


def test_the_check_fails_when_a_needed_module_is_left_out():
    # torch.utils.checkpoint (imported by diffusers) imports torch.testing._internal: leaving that
    # out broke the first bundle. The blocker must reproduce that failure, and hide optional packages.
    code = (
        "import sys; sys.path.insert(0, 'packaging'); import check_contents, importlib.util\n"
        "check_contents.install_blocker(['torch.testing._internal', 'hypothesis'])\n"
        "assert importlib.util.find_spec('hypothesis') is None\n"
        "import torch.utils.checkpoint\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "No module named 'torch.testing._internal'" in done.stderr


def test_kept_transformers_families_are_real_and_clip_is_kept():
    import transformers

    models = Path(transformers.__file__).parent / "models"
    assert all((models / family / "__init__.py").is_file() for family in bundle_contents.TRANSFORMERS_MODEL_FAMILIES)
    excluded = bundle_contents.transformers_family_excludes()
    assert "transformers.models.clip" not in excluded and "transformers.models.llama" in excluded
    assert len(excluded) > 400  # the point of the list: most of the ~550 families stay out

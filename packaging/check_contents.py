"""Quick check, before a full build: does the app still work without what the bundle leaves out?

    python packaging/check_contents.py

Runs the engine's start-up imports and self-test (and imports the desktop app) in this Python with
every module in bundle_contents.EXCLUDES made unimportable, as it is in the bundle: an import fails
with ModuleNotFoundError and ``importlib.util.find_spec`` answers None. Then compares the transformers
model families that got imported with bundle_contents.TRANSFORMERS_MODEL_FAMILIES. About a minute,
against many for a build. Exit code 0 when every check passed and no imported family is left out.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
import bundle_contents  # noqa: E402


def install_blocker(excluded: list[str]) -> list[str]:
    """Make ``excluded`` modules (and their submodules) unimportable; returns the list of attempts."""
    attempts: list[str] = []

    def blocked(name: str) -> bool:
        return any(name == e or name.startswith(e + ".") for e in excluded)

    real_find_spec = importlib.util.find_spec

    def find_spec(name, package=None):  # what optional-dependency probes see in the bundle
        return None if blocked(name) else real_find_spec(name, package)

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if blocked(name):
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named '{name}'", name=name)
            return None

    importlib.util.find_spec = find_spec
    sys.meta_path.insert(0, Blocker())
    return attempts


def main() -> int:
    attempts = install_blocker(bundle_contents.EXCLUDES)
    from engine.selftest import run_selftest
    from engine.warmup import warm_imports

    warm_imports()  # what the app's engine thread imports at start-up, beyond the self-test's paths
    ok = run_selftest(out=sys.stdout)
    import desktop_app.app  # noqa: F401  (the GUI side's imports)

    for name in bundle_contents.FEATURE_IMPORTS:  # what a feature imports when it runs
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"{name} (imported when a feature runs) cannot be imported in the bundle: {exc}")
            ok = False

    print("blocked imports attempted (harmless when every check passed):", ", ".join(sorted(set(attempts))) or "none")
    used = {m.split(".")[2] for m in sys.modules if m.startswith("transformers.models.") and m.count(".") >= 2}
    missing = sorted(used - bundle_contents.TRANSFORMERS_MODEL_FAMILIES)
    if missing:
        print("transformers model families the app imports but the bundle leaves out: " + ", ".join(missing)
              + " (add them to TRANSFORMERS_MODEL_FAMILIES in packaging/bundle_contents.py)")
    else:
        print(f"the {len(used)} transformers model families the app imports are all kept")
    return 0 if ok and not missing else 1


if __name__ == "__main__":
    raise SystemExit(main())

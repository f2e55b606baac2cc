"""The frozen app's entry point: the same launcher as the ``easel`` console script.

In the bundle ``sys.executable`` is this program, not a Python interpreter, yet the engine runs some
work in a child process the usual way (``[sys.executable, "-m", "engine.download", ...]``: downloads
and pickle conversion are isolated so a crash or a kill cannot take the app down). So the bundle
answers ``-m MODULE ARGS...`` like ``python -m`` does, for the modules bundled with it.
"""

import multiprocessing
import runpy
import sys


def main() -> int:
    multiprocessing.freeze_support()
    if len(sys.argv) >= 3 and sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from desktop_app.launcher import main as launcher_main

    return launcher_main()


if __name__ == "__main__":
    sys.exit(main())

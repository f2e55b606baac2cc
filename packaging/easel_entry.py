"""The frozen app's entry point: the same launcher as the ``easel`` console script."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from desktop_app.launcher import main

    sys.exit(main())

"""``easel grid`` (an X/Y/Z grid, here or on the farm) and ``easel farm`` (the farm's workers).

``easel grid`` prints each image's path as it is saved and the grid image's path last.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from engine.api import SAMPLERS, EaselError
from engine.grid import AXES, AXIS_HELP

EXIT_OK, EXIT_INTERRUPTED = 0, 130


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    axes = "; ".join(f"{name}: {AXIS_HELP[name]}" for name in AXES)
    grid = sub.add_parser("grid", parents=[common], help="an X/Y/Z grid of images (locally, or on the farm)",
                          description=f"Axes are AXIS=V1,V2,… with AXIS one of {', '.join(AXES)}. {axes}.")
    grid.add_argument("--model", metavar="PATH", help="a .safetensors checkpoint or diffusers folder")
    grid.add_argument("--prompt", metavar="TEXT")
    grid.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    grid.add_argument("--x", metavar="AXIS=V1,V2", help="the columns")
    grid.add_argument("--y", metavar="AXIS=V1,V2", help="the rows")
    grid.add_argument("--z", metavar="AXIS=V1,V2", help="one panel per value")
    grid.add_argument("--seed", type=int, default=None, help="default: one random seed for every cell")
    grid.add_argument("--steps", type=int, default=None)
    grid.add_argument("--cfg", type=float, default=None)
    grid.add_argument("--width", type=int, default=None)
    grid.add_argument("--height", type=int, default=None)
    grid.add_argument("--sampler", default="Euler a", choices=SAMPLERS, metavar="NAME")
    grid.add_argument("--from", dest="from_grid", metavar="GRID.png", help="re-run the grid recorded in a grid image")
    grid.add_argument("--farm", nargs="?", const="", default=None, metavar="ADDRESS",
                      help="run on a Ray cluster: the one at ADDRESS, or a local one started for this run")
    grid.add_argument("--workers", type=int, default=None, metavar="N", help="farm workers (default: one per GPU)")
    grid.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                      help="a folder with models, LoRAs and embeddings (repeatable; the farm's workers search it too)")
    grid.add_argument("--out", metavar="DIR", help="a folder for the images and the grid (default: the gallery)")

    farm = sub.add_parser("farm", parents=[common], help="show the farm's workers (Ray cluster) and the models they have")
    farm.add_argument("--address", default=None, metavar="ADDRESS", help="a Ray cluster (default: a local one)")
    farm.add_argument("--workers", type=int, default=None, metavar="N")
    farm.add_argument("--model", action="append", default=[], dest="check_models", metavar="PATH",
                      help="check which workers have this model (repeatable)")
    farm.add_argument("--models-dir", action="append", default=[], metavar="DIR")


class _Printer:
    """Progress on stderr, one line per finished job; image paths on stdout."""

    def __init__(self, plan):
        self.plan = plan
        self.count = len(plan.jobs)
        self.done = 0

    def job_started(self, job, worker):
        pass

    def job_progressed(self, job, step, total):
        pass

    def job_finished(self, job, paths):
        self.done += 1
        for p in paths:
            print(p, flush=True)
        print(f"[{self.done}/{self.count}] {job.describe(self.plan)}", file=sys.stderr, flush=True)

    def job_failed(self, job, message):
        self.done += 1
        print(f"easel: [{self.done}/{self.count}] {job.describe(self.plan)} failed: {message}", file=sys.stderr)

    def note(self, line):
        print(f"easel: {line}", file=sys.stderr, flush=True)


def run_grid(args) -> int:
    from engine.cli_common import library_for, with_native_size
    from engine.grid import GridRun, parse_axis, plan_from_recipe, plan_grid, read_recipe

    library = library_for(args)
    if args.from_grid:
        changes = {"model": args.model} if args.model else {}
        plan = plan_from_recipe(read_recipe(args.from_grid), **changes)
    else:
        if not args.model or args.prompt is None:
            raise EaselError("--model and --prompt are needed (or --from GRID.png to re-run a grid)")
        if not (args.x or args.y or args.z):
            raise EaselError("give at least one axis, e.g. --x seed=1,2,3 or --x cfg=4,7")
        from engine.api import GenerationRequest

        fields = dict(prompt=args.prompt, negative_prompt=args.negative, model=args.model, seed=args.seed,
                      sampler=args.sampler)
        for key, value in (("steps", args.steps), ("guidance_scale", args.cfg), ("width", args.width),
                           ("height", args.height)):
            if value is not None:
                fields[key] = value
        base = GenerationRequest(**with_native_size(fields, args.model))
        axes = [parse_axis(a) if a else None for a in (args.x, args.y, args.z)]
        plan = plan_grid(base, *axes)
    printer = _Printer(plan)
    cancel = threading.Event()
    interrupted = False
    with _destination(args) as (gallery, out):
        run = GridRun(plan, library=gallery, out=out, events=printer)
        try:
            if args.farm is not None:
                from engine.farm.farm import Farm

                folders = [str(Path(f)) for f in library.folders]
                folders += sorted({str(Path(j.request.model).expanduser().resolve().parent) for j in plan.jobs})
                hashes = {j.request.model: library.sha256(j.request.model) for j in plan.jobs}
                with Farm(args.farm or None, workers=args.workers, folders=folders, device=args.device,
                          data_dir=args.data_dir) as farm:
                    farm.run(plan, run, cancel, model_hashes=hashes)
            else:
                from engine.engine import Engine
                from engine.grid import run_local
                from engine.paths import data_dir

                engine = Engine(device=args.device, library=library, state_dir=data_dir(args.data_dir))
                run_local(plan, engine, run, cancel)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            grid_path = run.finish()
            if cancel.is_set():
                interrupted = True
    if grid_path is None:
        raise EaselError("no image of the grid was made" + ("" if run.failures else " (cancelled)"))
    if run.failures:
        print(f"easel: {len(run.failures)} of {len(plan.jobs)} image(s) failed (shown as grey cells)", file=sys.stderr)
    print(grid_path)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


class _destination:
    """The gallery library (default) or an --out folder, for the duration of the run."""

    def __init__(self, args):
        self.args = args
        self.library = None

    def __enter__(self):
        if self.args.out:
            out = Path(self.args.out)
            out.mkdir(parents=True, exist_ok=True)
            return None, out
        from engine.cli_gallery import open_library

        self.library = open_library(self.args.data_dir, need_owner=False)
        return self.library, None

    def __exit__(self, *exc):
        if self.library is not None:
            self.library.close()


def run_farm(args) -> int:
    from engine.cli_common import library_for
    from engine.farm.farm import Farm

    library = library_for(args)
    for m in args.check_models:  # the model's own folder, as for `easel grid`
        library.folders.append(str(Path(m).expanduser().resolve().parent))
    with Farm(args.address, workers=args.workers, folders=[str(f) for f in library.folders], device=args.device,
              data_dir=args.data_dir) as farm:
        where = f"the Ray cluster at {args.address}" if args.address else "a local Ray cluster (127.0.0.1 only)"
        print(f"{len(farm.workers)} worker(s) on {where}")
        for w in farm.describe():
            print(f"  {w['name']}: {w['device']} on {w['host']} (pid {w['pid']})")
        if args.check_models:
            hashes = {library.sha256(m): Path(m).name for m in args.check_models}
            lines = farm.locate(hashes)
            for line in lines:
                print(line)
            if not lines:
                print(f"every worker has {', '.join(hashes.values())}")
    return EXIT_OK

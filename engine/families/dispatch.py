"""The engine's hook for non-SD families: route a model/request to its family runner, or return None.

Kept out of engine/engine.py so the SD path stays as it is: Engine.load and Engine.generate call
``load`` / ``generate`` here first. One model is in memory at a time: loading a runner model frees
the SD pipeline, and loading an SD model drops the runner. Runs on the engine thread.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from engine.api import ModelInfo, random_seed


@dataclasses.dataclass
class _Held:
    path: str
    runner: object
    hash: str


def load(engine, model_path: str) -> ModelInfo | None:
    """Load ``model_path`` through its family runner and return its info; None when it is an SD model
    (nothing done but dropping a held runner). Raises ModelError as Engine.load does. Engine thread."""
    from engine import families
    from engine.modelfiles import check_model, model_hash

    path = str(Path(model_path).expanduser().resolve())
    held: _Held | None = getattr(engine, "_family_held", None)
    if held is not None and held.path == path:
        return held.runner.info
    sd = getattr(engine, "_model", None)
    if held is None and sd is not None and sd.info.path == path:
        return None  # the SD model already loaded: no need to look at its files again
    info = check_model(path)
    module = families.runner_for(info)
    if module is None:
        unload(engine)
        return None
    engine.unload()  # the SD model and any held runner
    runner = module.load(info, engine.device, engine.dtype)
    engine._family_held = _Held(path, runner, model_hash(path))
    return info


def unload(engine) -> None:
    """Drop the held family runner, freeing its device memory (runners with several pipelines, such as
    the IF cascade, have ``close()``). Engine.unload calls this. Runs on the engine thread."""
    held: _Held | None = getattr(engine, "_family_held", None)
    engine._family_held = None
    close = getattr(held.runner, "close", None) if held is not None else None
    if close is not None:
        close()


def generate(engine, request, on_progress, cancel):
    """The Result of ``request`` when its model belongs to a family runner; None for the SD path.
    Runs on the engine thread."""
    started = time.perf_counter()
    before: _Held | None = getattr(engine, "_family_held", None)
    if request.model:
        if load(engine, request.model) is None:
            return None
    held: _Held | None = getattr(engine, "_family_held", None)
    if held is None:
        return None
    if request.seed is None:
        request = request.replace(seed=random_seed())
    result = held.runner.generate(request, on_progress, cancel, held.hash, started)
    if held is not before:  # loaded for this request: say how long that took, as the SD path does
        load_seconds = getattr(held.runner, "load_seconds", 0.0)
        result = dataclasses.replace(result, timings=dataclasses.replace(result.timings, load=load_seconds))
    return result

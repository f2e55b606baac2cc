"""The config sanity check: a diffusers folder's configs must be in proportion to its weights.

A model's ``config.json`` says how big each part is (channels, layers, vocabulary, timesteps), and
the library allocates what it says before any weight is read. A hostile or damaged config asking
for a billion channels next to a few MB of weights would try to allocate terabytes. So, before a
folder is loaded:

1. every whole number in a config is bounded: a layer or head count by ``MAX_COUNT``, any other
   size by the number of weight elements on disk in that part (no dimension can be larger than all
   of the part's weights together), and a part without weights (a scheduler) by ``MAX_FREE_INT``;
2. a model part whose class the libraries know (diffusers models, transformers models; a class is
   never imported by name from anywhere else) is built on torch's ``meta`` device, which allocates
   nothing, and its parameter and buffer count must stay within ``RATIO`` times the elements on disk.

Runs on the engine thread, just before loading (it imports torch for step 2).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator

from engine.api import ModelError
from engine.files.safe import is_regular, printable, read_json

log = logging.getLogger(__name__)

MAX_COUNT = 1_000  # layers, blocks, heads: real models have at most a few hundred
MAX_FREE_INT = 1_000_000  # any number in a weightless config (scheduler: 1,000 timesteps)
RATIO = 2  # parameters + buffers the config implies, per weight element on disk
SLACK = 1_000_000  # buffers no file stores (position ids, attention masks)
_COUNT_KEY = re.compile(r"layers|blocks|depth|heads|num_res|repeat", re.IGNORECASE)
_NOT_SIZES = {"seed", "sample_size", "_diffusers_version", "bos_token_id", "eos_token_id", "pad_token_id"}


def _ints(value: Any, key: str = "") -> Iterator[tuple[str, int]]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and k not in _NOT_SIZES:
                yield from _ints(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _ints(v, key)


def _weight_elements(folder: Path) -> int:
    from engine.files.headers import read_header

    total = 0
    for f in sorted(folder.iterdir()):
        if f.name.endswith(".safetensors") and is_regular(f):
            for info in read_header(f).tensors.values():
                n = 1
                for d in info.shape:
                    n *= d
                total += n
    return total


def check_folder_proportions(root: str | Path) -> None:
    """Refuse (``ModelError``, one line) a diffusers folder one of whose configs asks for far more
    than its weights on disk hold, before anything is allocated. Engine thread."""
    root = Path(root)
    for part in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        config_path = next((part / n for n in ("config.json", "scheduler_config.json") if is_regular(part / n)), None)
        if config_path is None:
            continue
        config = read_json(config_path)
        if not isinstance(config, dict):
            continue
        elements = _weight_elements(part)
        where = f"{part.name}/{config_path.name}"
        for key, value in _ints(config):
            if value < 0:
                continue
            limit = MAX_COUNT if _COUNT_KEY.search(key) else max(elements, 100_000) if elements else MAX_FREE_INT
            if value > limit:
                raise ModelError(printable(str(root)), f"{where} asks for {key} = {value:,}, out of all proportion "
                                                       f"to the model's weights: the folder is damaged")
        if elements:
            implied = _meta_size(config)
            if implied is not None and implied > RATIO * elements + SLACK:
                raise ModelError(printable(str(root)), f"{where} describes {implied:,} parameters but the weights "
                                                       f"hold {elements:,}: the folder is damaged")


def _meta_size(config: dict) -> int | None:
    """Parameters + buffers of the model ``config`` describes, built on the meta device (nothing
    allocated); None when its class is not one the libraries export, or it cannot be built."""
    model = _meta_model(config)
    if model is None:
        return None
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def _meta_model(config: dict):
    """The model ``config`` describes, built on torch's meta device (nothing allocated); None when its
    class is not one diffusers or transformers exports, or it cannot be built."""
    import torch

    name = config.get("_class_name")
    archs = config.get("architectures")
    try:
        if isinstance(name, str):
            import diffusers

            cls = getattr(diffusers, name, None)
            if not (isinstance(cls, type) and issubclass(cls, diffusers.ModelMixin)):
                return None
            with torch.device("meta"):
                return cls.from_config(config)
        elif isinstance(archs, list) and archs and isinstance(archs[0], str):
            import transformers

            cls = getattr(transformers, archs[0], None)
            if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
                return None
            with torch.device("meta"):
                return cls(cls.config_class.from_dict(config))
    except Exception as exc:  # noqa: BLE001 - the real load says what is wrong with such a config
        log.info("config model check skipped (%s: %s)", type(exc).__name__, exc)
    return None


def explain_mismatch(root: str | Path, parts: tuple[str, ...] | None = None) -> str | None:
    """After a folder failed to load (or loaded with weights left unfilled): which part's weights do
    not fit its config, as one plain line, or None when the headers and configs agree (the failure
    is something else). Compares each part's config, built on the meta device, with its safetensors
    headers: a tensor of another shape, or weights the config needs that no file holds. ``parts``:
    only those subfolders. Engine thread."""
    from engine.files.headers import read_header

    root = Path(root)
    for part in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if parts is not None and part.name not in parts:
            continue
        config = read_json(part / "config.json") if is_regular(part / "config.json") else None
        files = [f for f in sorted(part.iterdir()) if f.name.endswith(".safetensors") and is_regular(f)]
        if not isinstance(config, dict) or not files or "quantization_config" in config:
            continue
        model = _meta_model(config)
        if model is None:
            continue
        stored: dict[str, tuple[int, ...]] = {}
        for f in files:
            stored.update(read_header(f).shapes())
        expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
        for name, shape in expected.items():
            if name in stored and tuple(stored[name]) != shape:
                return (f"{part.name}/ does not match its config.json: {printable(name)} is {_dims(stored[name])} "
                        f"in the weights but the config makes it {_dims(shape)} (the folder mixes parts of "
                        "different models, or is damaged)")
        missing = [name for name in expected if name not in stored]
        if missing and len(missing) < len(expected):
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            return (f"{part.name}/ lacks weights its config.json needs ({printable(missing[0])}{more}): "
                    "the file is incomplete or belongs to another model")
    return None


def _dims(shape) -> str:
    return "×".join(str(d) for d in shape) or "a scalar"

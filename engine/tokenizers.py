"""The bundled CLIP tokenizers, built once per process and shared by every model that uses them.

Building a CLIPTokenizer parses a 49,408-entry vocabulary and its BPE merges while holding the
GIL for 60-80 ms: done during a model load, that stalls the GUI thread. The engine thread builds
them at start-up (engine.warmup) and loading passes them in, for single files (which always use
the bundled tokenizers) and for diffusers folders whose tokenizer files are the bundled ones.
Tokenizers are only read when prompts are encoded, so one instance can serve every pipeline, until
a textual-inversion embedding adds tokens: the SD add-ons then give that model its own copy first
(``is_shared``), so the embedding never leaks into another model.
"""

from __future__ import annotations

import hashlib
import tempfile
from functools import lru_cache
from pathlib import Path

from engine import architectures as arch
from engine.files.safe import MAX_JSON_BYTES, read_bytes

_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def _build(kind: str):
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="easel-tokenizer-") as tmp:
        return CLIPTokenizer.from_pretrained(str(arch.write_tokenizer(Path(tmp), kind)))


@lru_cache(maxsize=None)
def bundled_tokenizer(kind: str):
    """The bundled tokenizer of ``kind`` ("clip" or "clip-pad-bang"), shared. Runs on the engine thread."""
    tokenizer = _build(kind)
    _SHARED[kind] = tokenizer
    return tokenizer


_SHARED: dict = {}  # kind -> the instance bundled_tokenizer handed out


def is_shared(tokenizer) -> bool:
    """Whether ``tokenizer`` is one of the bundled instances every model shares."""
    return tokenizer is not None and any(tokenizer is shared for shared in _SHARED.values())


def private_copy(tokenizer):
    """A model's own instance of the shared bundled ``tokenizer`` (built afresh from the bundled files:
    a ``copy.deepcopy`` of one tokenizes differently under compel). Engine thread; about a second."""
    kind = next(k for k, shared in _SHARED.items() if shared is tokenizer)
    return _build(kind)


@lru_cache(maxsize=None)
def _bundled_digest(kind: str) -> str:
    with tempfile.TemporaryDirectory(prefix="easel-tokenizer-") as tmp:
        return _digest(arch.write_tokenizer(Path(tmp), kind))


def _digest(folder: Path) -> str | None:
    h = hashlib.sha256()
    for name in _FILES:
        path = folder / name
        if not path.is_file():
            return None
        h.update(name.encode())
        h.update(read_bytes(path, MAX_JSON_BYTES))
    return h.hexdigest()


def single_file_tokenizers(family: str) -> dict:
    """{"tokenizer": ..., ["tokenizer_2": ...]} for a single-file checkpoint of ``family``."""
    return {name: bundled_tokenizer(kind) for name, kind in arch.tokenizer_kinds(family).items()}


def folder_tokenizers(folder: str | Path, family: str) -> dict:
    """The bundled tokenizers a diffusers folder can use instead of its own: only those whose files
    are byte-identical to the bundled ones (anything else loads from the folder as usual)."""
    found = {}
    for name, kind in arch.tokenizer_kinds(family).items():
        if _digest(Path(folder) / name) == _bundled_digest(kind):
            found[name] = bundled_tokenizer(kind)
    return found


def warm() -> None:
    """Build both bundled tokenizers now. Runs on the engine thread at start-up."""
    for kind in ("clip", "clip-pad-bang"):
        bundled_tokenizer(kind)
        _bundled_digest(kind)

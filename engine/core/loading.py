"""Loading a family's diffusers pipeline the one way: offline, safetensors only, quiet, and every
failure one plain line naming the model (never a traceback on the terminal). Engine thread.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

import engine  # noqa: F401  (sets the Hugging Face libraries offline before diffusers is imported)
from engine.api import ModelError
from engine.files.safe import printable

log = logging.getLogger(__name__)

# What a broken or mismatched folder raises from diffusers/transformers/safetensors.
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError, ImportError)


@functools.cache
def quiet_libraries() -> None:
    """Keep diffusers/transformers from printing progress bars, advice and errors into the user's
    terminal (their records go to Easel's log file)."""
    import warnings

    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    # Their own stderr handlers off: what they log (errors included) goes through Easel's logging to
    # the log file, never straight onto the user's terminal; warnings stay out of it as noise.
    for lib in (dlog, tlog):
        lib.disable_default_handler()
        lib.enable_propagation()
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    warnings.filterwarnings("ignore", message="Should have ta>=t0", module="torchsde")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (at most 300 characters), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def load_failed(name: str, what: str, exc: BaseException, folder: str | None = None) -> ModelError:
    """The one-line ModelError for a failed load ("could not load this aMUSEd model: …"); the details
    go to the log file only. For a diffusers ``folder``, a part whose weights do not fit its config is
    named in plain words rather than in the library's ("Cannot load  because … expected shape …")."""
    log.debug("loading %s failed", name, exc_info=exc)
    return ModelError(name, f"could not load {what}: {_explained(folder) or _plain(exc)}")


_UNREADABLE = re.compile(r"^Unable to load weights from checkpoint file for '([^']*)'")


def _plain(exc: BaseException) -> str:
    """The failure in plain words: diffusers' "Unable to load weights from checkpoint file for 'F' at
    'F'." (which drops the reason) becomes the file's name and the reason underneath it."""
    line = first_line(exc)
    found = _UNREADABLE.match(line)
    if not found:
        return line
    cause, seen = exc, set()
    while (cause.__cause__ or cause.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    path = Path(found.group(1))
    where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    reason = first_line(cause) if cause is not exc and not _UNREADABLE.match(first_line(cause)) else ""
    reason = reason if not reason.startswith("Unable to locate the file") else ""
    return (f"{printable(where)} could not be read as weights" + (f" ({reason})" if reason else "")
            + ": the file is damaged, or newer than this version of Easel reads")


def check_filled(pipe, name: str, what: str, folder: str | None = None) -> None:
    """Refuse (one plain line) a loaded pipeline a part of which still has weights no file filled (the
    libraries only warn, and the first move to a device fails much later with "meta tensor")."""
    import torch

    components = getattr(pipe, "components", None) or {}
    for part, module in components.items():
        if isinstance(module, torch.nn.Module) and any(p.is_meta for p in module.parameters()):
            raise ModelError(name, f"could not load {what}: " + (
                _explained(folder, (part,)) or f"{part}/ lacks weights its config needs: the file is incomplete "
                                               "or belongs to another model"))


def _explained(folder: str | None, parts: tuple[str, ...] | None = None) -> str | None:
    if folder is None:
        return None
    from engine.files.configcheck import explain_mismatch

    try:
        return explain_mismatch(folder, parts)
    except (ModelError, OSError, ValueError) as exc:  # a damaged header: the first failure's text is clearer
        log.debug("no explanation for %s: %s", folder, exc)
        return None


def assembled(load, name: str, what: str):
    """``load()``: a pipeline put together from separate files (ComfyUI's split layout, a GGUF or fp8
    transformer with its parts beside it), with the libraries quiet and progress bars off; a failure
    is the one-line ``load_failed(name, what, …)`` (a ModelError passes as it is). ``load`` may give
    (pipe, extra), which is given back as it is."""
    quiet_libraries()
    try:
        out = load()
    except ModelError:
        raise
    except LOAD_ERRORS as exc:
        raise load_failed(name, what, exc) from exc
    (out[0] if isinstance(out, tuple) else out).set_progress_bar_config(disable=True)
    return out


def named_model(want: str, library, kind: str, family: str = "", *, folders: bool = True) -> str | None:
    """The path a user's ``want`` names for an add-on model (a control model, IP-Adapter, Redux model):
    a file on disk (or a folder, with ``folders``), else the ``library`` entry of ``kind`` called so
    (``x.safetensors`` by its stem), preferring ``family``'s; None when neither. Any thread."""
    path = Path(want).expanduser()
    if path.is_file() or (folders and path.exists()):
        return os.path.realpath(path)
    if library is None:
        return None
    entry = library.find(kind, Path(want).stem if want.endswith(".safetensors") else want, family)
    return entry.path if entry is not None else None


def pretrained(cls, path: str, name: str, what: str, **kwargs):
    """``cls.from_pretrained(path)`` offline and safetensors-only, progress bars off, after the config
    sanity check (configs out of all proportion to the weights are refused before anything is
    allocated: ``engine.files.configcheck``); a failure is ``load_failed(name, what, …)``."""
    from engine.files.configcheck import check_folder_proportions

    quiet_libraries()
    check_folder_proportions(path)
    kwargs.setdefault("local_files_only", True)
    kwargs.setdefault("use_safetensors", True)
    try:
        pipe = cls.from_pretrained(path, **kwargs)
    except ModelError:
        raise
    except LOAD_ERRORS as exc:
        raise load_failed(name, what, exc, path) from exc
    check_filled(pipe, name, what, path)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe

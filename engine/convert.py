"""Convert a pickled checkpoint (.ckpt/.pt/.pth) to .safetensors, when the user asks for it.

Easel never unpickles in its own process. ``convert_to_safetensors`` starts a separate Python process
(``python -m engine.convert SRC DEST``) that reads the file with ``torch.load(weights_only=True)``:
torch's restricted unpickler, which only rebuilds tensors and plain containers and refuses any other
global, so a file that tries to run code fails to load instead of running it. The tensors are written
beside the original as ``<name>.safetensors`` (through a ``.part`` file, renamed when complete); the
original is left as it was.

``convert_to_safetensors`` blocks until the child ends: call it on a worker thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.api import EaselError

TIMEOUT_S = 3600


class ConversionError(EaselError):
    """The file could not be converted (refused by the restricted loader, damaged, no space)."""


def target_path(source: str | os.PathLike[str]) -> Path:
    return Path(source).with_suffix(".safetensors")


def convert_to_safetensors(source: str | os.PathLike[str], *, timeout: float = TIMEOUT_S) -> Path:
    """Convert ``source`` in a separate process; returns the new file's path. Raises ConversionError."""
    src = Path(source).expanduser().resolve()
    dest = target_path(src)
    if not src.is_file():
        raise ConversionError(f"{src.name}: no such file")
    if dest.exists():
        raise ConversionError(f"{dest.name} already exists beside {src.name}: nothing to convert")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "engine.convert", str(src), str(dest)], capture_output=True,
                              text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{src.name}: the conversion took longer than {timeout:.0f} s and was stopped") from None
    result = None
    for line in proc.stdout.splitlines():
        try:
            result = json.loads(line)
        except ValueError:
            continue
    if proc.returncode != 0 or not result or result.get("error"):
        message = (result or {}).get("error") or (proc.stderr.strip().splitlines() or ["the converter stopped"])[-1]
        raise ConversionError(f"{src.name} could not be converted: {message}")
    return Path(result["path"])


# ------------------------------------------------------------------------------------------------
# The child process
# ------------------------------------------------------------------------------------------------


def _flatten(obj, prefix: str, out: dict) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)


def _child(src: str, dest: str) -> int:
    import torch

    def fail(message: str) -> int:
        print(json.dumps({"error": message, "pid": os.getpid()}), flush=True)
        return 2

    with open(src, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # mmap (no second copy in memory) needs the zip format
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as exc:  # noqa: BLE001 - the restricted unpickler refuses with several types
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "WeightsUnpickler" in text:
            return fail("it holds more than weights (Python objects or code), so it was refused; "
                        "get a .safetensors version of this model from its author")
        return fail(f"it is not a readable checkpoint ({text.splitlines()[0][:160] if text else type(exc).__name__})")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # A1111/LDM checkpoints: {"state_dict": {...}, "global_step": ...}
    tensors: dict = {}
    _flatten(obj, "", tensors)
    if not tensors:
        return fail("it holds no tensors")
    seen: set[int] = set()
    clean = {}
    for key, t in tensors.items():
        t = t.detach().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():  # shared storage (tied weights): safetensors needs separate copies
            t = t.clone()
        seen.add(ptr)
        clean[key] = t
    from safetensors.torch import save_file

    part = dest + ".part"
    try:
        save_file(clean, part, metadata={"converted_from": os.path.basename(src), "format": "pt"})
        os.replace(part, dest)
    except OSError as exc:
        try:
            os.unlink(part)
        except OSError:
            pass
        return fail(f"could not write {os.path.basename(dest)}: {exc.strerror or exc}")
    print(json.dumps({"path": dest, "tensors": len(clean), "pid": os.getpid()}), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m engine.convert SRC DEST", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child(sys.argv[1], sys.argv[2]))

"""Download a model from the Hugging Face hub by repo id: the one place Easel goes online.

The transfer runs in a separate process (``python -m engine.download REPO ...``) with the network
switched on for that process alone: Easel's own process keeps ``HF_HUB_OFFLINE=1`` (huggingface_hub
reads it once, at import), so nothing else can reach the network by accident. Files go into the
hub cache (shared with diffusers, ComfyUI and other tools that use it); a transfer that is cancelled
or cut off leaves a ``.incomplete`` file that the next attempt resumes. Before starting, the free
disk space is checked; afterwards every file's size, and every large file's SHA-256, is verified.

``Download.run`` is called on a worker thread (never the GUI thread): it blocks until the child ends,
calling ``on_event`` (on that thread) for each plan / progress / done event.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.api import Cancelled, DownloadError
from engine.files.safe import printable

# Small, permissive starters (shown in the download dialog; the user can type any repo id).
SUGGESTED = (
    ("stabilityai/sd-turbo", "SD 2.1 Turbo: good images in 1-4 steps, 512 px (about 2.6 GB)"),
    ("stabilityai/sdxl-turbo", "SDXL Turbo: 1-4 steps, 512 px (about 7 GB)"),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "Stable Diffusion 1.5: the classic 512 px base (about 2.7 GB)"),
    ("madebyollin/taesd", "TAESD: sharp live previews for SD 1.x/2.x models (a few MB)"),
    ("madebyollin/taesdxl", "TAESDXL: sharp live previews for SDXL models (a few MB)"),
)

DEFAULT_INCLUDE = ("*.json", "*.txt", "*.safetensors", "*.model")
# What the hub's own names look like. Everything the server sends that becomes part of a path (file
# names, hashes, the commit) is checked against these before it touches the disk: a hostile mirror
# could otherwise send "../" in a sha256 and make the downloader truncate and delete files elsewhere.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+ ()\[\]-]{0,254}")
RESERVE_BYTES = 512 * 2**20  # keep this much free after the download


@dataclass(frozen=True)
class DownloadEvent:
    """``kind``: "plan" (total/need bytes, files), "progress" (done/total bytes), "verifying", "done" (path)."""

    kind: str
    done: int = 0
    total: int = 0
    need: int = 0
    files: tuple[str, ...] = ()
    path: str = ""
    file: str = ""


class Download:
    """One download of ``repo_id`` into the hub cache (``cache_dir``; default: the hub's own).

    ``include``: filename patterns (default: configs, tokenizers and ``.safetensors`` weights; the
    fp16/other "variant" copies are skipped when the plain file exists). ``endpoint``: another hub
    (``HF_ENDPOINT``), e.g. a mirror.
    """

    def __init__(self, repo_id: str, *, revision: str | None = None, include: list[str] | None = None,
                 cache_dir: str | None = None, endpoint: str | None = None, reserve_bytes: int = RESERVE_BYTES):
        if not valid_repo_id(repo_id):
            raise DownloadError(f"“{printable(repo_id)}” is not a Hugging Face repo id (like stabilityai/sd-turbo)")
        self.repo_id = repo_id
        self.revision = revision
        self.include = list(include) if include else None
        self.cache_dir = cache_dir
        self.endpoint = endpoint
        self.reserve_bytes = reserve_bytes

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "engine.download", self.repo_id, "--reserve-bytes", str(self.reserve_bytes)]
        if self.revision:
            cmd += ["--revision", self.revision]
        if self.cache_dir:
            cmd += ["--cache-dir", self.cache_dir]
        for pattern in self.include or ():
            cmd += ["--include", pattern]
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONUNBUFFERED="1")
        if self.endpoint:
            env["HF_ENDPOINT"] = self.endpoint
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def run(self, on_event: Callable[[DownloadEvent], None] | None = None,
            cancel: threading.Event | None = None) -> Path:
        """Download and verify; returns the snapshot folder. Raises DownloadError (one plain line) or
        Cancelled (the partial file stays, for the next attempt to resume). Runs on a worker thread."""
        proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.environment(), bufsize=1)
        stopped = threading.Event()

        def watch() -> None:
            while not stopped.is_set():
                if cancel is not None and cancel.wait(0.1):
                    _stop(proc)
                    return
                if cancel is None:
                    stopped.wait(0.5)

        watcher = threading.Thread(target=watch, name="easel-download-cancel", daemon=True)
        watcher.start()
        result: Path | None = None
        error: str | None = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                kind = msg.get("event")
                if kind == "error":
                    error = msg.get("message") or "the download failed"
                elif kind == "done":
                    result = Path(msg["path"])
                if on_event is not None and kind in ("plan", "progress", "verifying", "done"):
                    on_event(DownloadEvent(kind, msg.get("done", 0), msg.get("total", 0), msg.get("need", 0),
                                           tuple(msg.get("files", ())), msg.get("path", ""), msg.get("file", "")))
            proc.wait()
        finally:
            stopped.set()
            if proc.poll() is None:
                _stop(proc)
            watcher.join(timeout=5)
        if cancel is not None and cancel.is_set() and result is None:
            raise Cancelled()
        if error:
            raise DownloadError(error)
        if result is None or proc.returncode != 0:
            tail = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise DownloadError(f"the download of {self.repo_id} stopped unexpectedly"
                                + (f": {tail[-1][:200]}" if tail else ""))
        return result


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ------------------------------------------------------------------------------------------------
# The child process
# ------------------------------------------------------------------------------------------------


def _emit(**msg) -> None:
    print(json.dumps(msg), flush=True)


def valid_repo_id(repo_id: str) -> bool:
    """Whether ``repo_id`` looks like ``owner/name`` as the hub spells them (no "..", no spaces)."""
    return isinstance(repo_id, str) and bool(_REPO_ID.fullmatch(repo_id)) and ".." not in repo_id


def unsafe_listing(siblings: list[dict], commit: object) -> str | None:
    """Why a hub listing cannot be trusted with paths (one line), or None when every name and hash
    is well formed: relative file names without "..", hidden or empty parts, hex SHA-256s, a hex
    commit, sizes that are whole numbers. Runs in the download child, before any file is touched."""
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        return f"the hub sent a malformed commit id ({printable(str(commit))[:80]})"
    for s in siblings:
        name, digest, size = s.get("rfilename"), s.get("sha256"), s.get("size")
        parts = name.split("/") if isinstance(name, str) else []
        if not parts or len(name) > 1024 or not all(_NAME_PART.fullmatch(p) for p in parts):
            return f"the hub sent an unsafe file name ({printable(str(name))[:120]})"
        if digest is not None and (not isinstance(digest, str) or not _SHA256.fullmatch(digest)):
            return f"the hub sent a malformed SHA-256 for {name} ({printable(str(digest))[:80]})"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return f"the hub sent a malformed size for {name}"
    return None


def choose_files(siblings: list[dict], include: list[str] | None) -> list[dict]:
    """The files to fetch: ``include`` patterns, and no "variant" copy (``x.fp16.safetensors``) whose
    plain file is also there (diffusers loads the plain one)."""
    patterns = include or list(DEFAULT_INCLUDE)
    names = {s["rfilename"] for s in siblings}
    chosen = []
    for s in siblings:
        name = s["rfilename"]
        if not any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(Path(name).name, p) for p in patterns):
            continue
        stem, dot, ext = name.rpartition(".")
        base, _, variant = stem.rpartition(".")
        if not include and variant and base and f"{base}.{ext}" in names:
            continue
        chosen.append(s)
    return chosen


def _child(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="engine.download")
    parser.add_argument("repo_id")
    parser.add_argument("--revision")
    parser.add_argument("--cache-dir")
    parser.add_argument("--include", action="append")
    parser.add_argument("--reserve-bytes", type=int, default=RESERVE_BYTES)
    args = parser.parse_args(argv)

    from huggingface_hub import HfApi, constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
    from tqdm.auto import tqdm

    # 1 MiB reads instead of 10: what a cancel or a dropped connection loses, and the progress steps.
    constants.DOWNLOAD_CHUNK_SIZE = 1 << 20
    api = HfApi()
    try:
        info = api.model_info(args.repo_id, revision=args.revision, files_metadata=True)
    except RepositoryNotFoundError:
        _emit(event="error", message=f"no model called {args.repo_id} on the hub (or it needs a login)")
        return 2
    except RevisionNotFoundError:
        _emit(event="error", message=f"{args.repo_id} has no revision {args.revision}")
        return 2
    except HfHubHTTPError as exc:
        _emit(event="error", message=f"the Hugging Face hub refused the request: {_first_line(exc)}")
        return 2
    except Exception as exc:  # noqa: BLE001 - httpx/requests connection errors are not OSErrors
        if _is_connection_error(exc):
            _emit(event="error", message="could not reach the Hugging Face hub (no network connection, or the hub "
                                         "is down); try again when online")
        else:
            _emit(event="error", message=f"the Hugging Face hub's answer could not be read: {_first_line(exc)}")
        return 2
    siblings = [{"rfilename": s.rfilename, "size": s.size or 0,
                 "sha256": s.lfs.sha256 if s.lfs else None} for s in (info.siblings or [])]
    problem = unsafe_listing(siblings, info.sha)
    if problem:
        _emit(event="error", message=f"{problem}: nothing was downloaded")
        return 2
    files = choose_files(siblings, args.include)
    if not files:
        _emit(event="error", message=f"{args.repo_id} has no model files Easel can use (.safetensors)")
        return 2
    total = sum(f["size"] for f in files)
    present = 0
    for f in files:
        cached = try_to_load_from_cache(args.repo_id, f["rfilename"], cache_dir=args.cache_dir, revision=info.sha)
        if isinstance(cached, str) and os.path.getsize(cached) == f["size"]:
            present += f["size"]
    need = total - present
    cache_root = Path(args.cache_dir) if args.cache_dir else Path(_hub_cache())
    probe = cache_root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    _emit(event="plan", total=total, need=need, files=[f["rfilename"] for f in files])
    if need + args.reserve_bytes > free:
        _emit(event="error", message=f"not enough disk space: the download needs {_gb(need)} and "
                                     f"{_gb(free)} is free on the drive of {cache_root}")
        return 2

    done_before = [0]

    class Reporter(tqdm):
        """Turns huggingface_hub's progress bar into JSON progress lines (throttled)."""

        def __init__(self, *a, **kw):
            kw["disable"] = False
            kw["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
            kw.pop("name", None)
            super().__init__(*a, **kw)
            self._last = -1

        def update(self, n=1):
            super().update(n)
            step = max(1, total // 200)
            if self.n // step != self._last:
                self._last = self.n // step
                _emit(event="progress", done=done_before[0] + int(self.n), total=total, file=current[0])

    current = [""]
    snapshot = None
    for f in files:
        current[0] = f["rfilename"]
        try:
            if f["sha256"]:
                problem = _fetch_blob(args, info.sha, f, Reporter)
                if problem:
                    _emit(event="error", message=f"{f['rfilename']} {problem}: it was deleted; download again")
                    return 4
            # Small files directly; for large ones the blob is in place, so this only links the snapshot.
            path = hf_hub_download(args.repo_id, f["rfilename"], revision=info.sha, cache_dir=args.cache_dir,
                                   tqdm_class=Reporter)
        except Exception as exc:  # noqa: BLE001 - one line for the parent, whatever the HTTP client raised
            if _is_connection_error(exc) and not isinstance(exc, (HfHubHTTPError, FileNotFoundError, PermissionError)):
                message = f"{f['rfilename']}: could not reach the Hugging Face hub (the connection was lost); " \
                          "run the download again to resume"
            else:
                message = f"{f['rfilename']}: {_first_line(exc)}"
            _emit(event="error", message=message)
            return 3
        done_before[0] += f["size"]
        _emit(event="progress", done=done_before[0], total=total, file=f["rfilename"])
        if f["size"] and os.path.getsize(path) != f["size"]:
            _emit(event="error", message=f"{f['rfilename']} is {os.path.getsize(path):,} bytes, the hub says "
                                         f"{f['size']:,}; download again")
            return 4
        snapshot = str(Path(path).parents[len(Path(f["rfilename"]).parts) - 1])
    _emit(event="done", path=snapshot)
    return 0


def _fetch_blob(args, commit: str, f: dict, tqdm_class) -> str | None:
    """Fetch one large (LFS) file into the hub cache's blob store, resuming a partial one.

    huggingface_hub (2.x) downloads into a per-process temporary file and throws it away when the
    transfer fails, so a cancelled or dropped download would start from zero. Here the partial data
    lives in ``blobs/<sha256>.incomplete`` (a stable name) and the next attempt asks only for the rest
    (HTTP Range). The data is checked against the published SHA-256 before it becomes the blob; then
    ``hf_hub_download`` finds it and only writes the snapshot link. Returns a problem, or None.
    """
    import hashlib

    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.utils import build_hf_headers

    cache = Path(args.cache_dir) if args.cache_dir else Path(_hub_cache())
    blobs = cache / repo_folder_name(repo_id=args.repo_id, repo_type="model") / "blobs"
    blob = blobs / f["sha256"]
    if blob.is_file() and blob.stat().st_size == f["size"]:
        return None
    meta = get_hf_file_metadata(hf_hub_url(args.repo_id, f["rfilename"], revision=commit))
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / (f["sha256"] + ".incomplete")
    with open(partial, "ab") as out:
        resume = out.tell()
        if resume > f["size"]:
            out.truncate(0)
            resume = 0
        if resume < f["size"]:
            http_get(meta.location, out, resume_size=resume, headers=build_hf_headers(), expected_size=f["size"],
                     displayed_filename=f["rfilename"], tqdm_class=tqdm_class)
    _emit(event="verifying", file=f["rfilename"])
    h = hashlib.sha256()
    with open(partial, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != f["sha256"]:
        partial.unlink(missing_ok=True)
        return "does not match its published SHA-256"
    os.replace(partial, blob)
    return None


def _first_line(exc: BaseException) -> str:
    return printable((str(exc).splitlines() or [type(exc).__name__])[0][:200])


def _is_connection_error(exc: BaseException) -> bool:
    """A network failure (no route, DNS, refused, timed out) from whichever HTTP client the hub uses."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {c.__name__ for c in type(exc).__mro__}
        if isinstance(exc, OSError) or names & {"ConnectError", "ConnectTimeout", "ConnectionError", "TimeoutException",
                                                "NetworkError", "ProxyError", "OfflineModeIsEnabled"}:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _hub_cache() -> str:
    from engine.models.locations import hf_hub_cache

    return hf_hub_cache()


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))

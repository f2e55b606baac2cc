"""Downloads end to end against a hub on loopback (127.0.0.1) that serves a tiny model in the hub's layout:
progress, cancel, resume after an interruption, disk-space check, size and hash verification."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from engine.api import Cancelled, DownloadError
from engine.download import Download, choose_files
from engine.files.probe import inspect_model

REPO = "acme/tiny-sd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BIG = "unet/diffusion_pytorch_model.safetensors"


class LoopbackHub:
    """A minimal hub: model info, HEAD and GET (with Range) for each file of one repo.

    ``stall``: the first GET of that file sends half of it, then waits (at most 60 s) for ``release``
    and drops the connection: an interrupted transfer. ``corrupt``: that file's bytes are served with
    one byte changed (its published SHA-256 stays the real one)."""

    def __init__(self, folder: Path, stall: str | None = None, corrupt: str | None = None):
        self.files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        self.stall, self.corrupt = stall, corrupt
        self.release = threading.Event()
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _file(self):
                path = unquote(urlparse(self.path).path)
                prefix = f"/{REPO}/resolve/"
                if not path.startswith(prefix):
                    return None
                name = path[len(prefix):].split("/", 1)[1]
                return name if name in hub.files else None

            def _headers_for(self, name, data):
                self.send_header("X-Repo-Commit", COMMIT)
                etag = hashlib.sha256(hub.files[name]).hexdigest() if name.endswith(".safetensors") else \
                    hashlib.sha1(hub.files[name]).hexdigest()
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Accept-Ranges", "bytes")

            def do_HEAD(self):  # noqa: N802
                hub.requests.append(("HEAD", self.path, None))
                name = self._file()
                if name is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self._headers_for(name, hub.files[name])
                self.send_header("Content-Length", str(len(hub.files[name])))
                self.end_headers()

            def do_GET(self):  # noqa: N802
                rng = self.headers.get("Range")
                hub.requests.append(("GET", self.path, rng))
                path = urlparse(self.path).path
                if path.startswith(f"/api/models/{REPO}"):
                    body = json.dumps({"id": REPO, "sha": COMMIT, "siblings": [
                        {"rfilename": n, "size": len(d),
                         **({"lfs": {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 130}}
                            if n.endswith(".safetensors") else {})}
                        for n, d in hub.files.items()]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name = self._file()
                if name is None:
                    self.send_error(404)
                    return
                data = hub.files[name]
                if name == hub.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                self.send_response(206 if start else 200)
                self._headers_for(name, data)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                try:
                    if name == hub.stall and not start:
                        hub.stall = None
                        half = len(data) // 2
                        self.wfile.write(data[:half])
                        self.wfile.flush()
                        hub.release.wait(60)  # bounded: the test releases it
                        self.close_connection = True
                        return
                    self.wfile.write(data[start:])
                except (ConnectionError, BrokenPipeError):  # the client was stopped mid-transfer
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="loopback-hub", daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    # A stalled transfer must stay stalled until the test acts (no read-timeout retry inside the child).
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "120")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hub"


@pytest.fixture
def served(tiny_models):
    hubs = []

    def make(**kw):
        hub = LoopbackHub(Path(tiny_models.get()), **kw)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()


def partial_of(hub, cache: Path, name: str) -> Path:
    return cache / "models--acme--tiny-sd" / "blobs" / (hashlib.sha256(hub.files[name]).hexdigest() + ".incomplete")


def test_interrupted_download_resumes_and_verifies(served, hub_env):
    import os

    hub = served(stall=BIG)
    events = []
    cancel = threading.Event()

    def on_event(event):
        events.append(event)
        part = partial_of(hub, hub_env, BIG)
        if event.kind == "progress" and event.file == BIG and part.exists() and part.stat().st_size:
            cancel.set()  # the user presses Cancel mid-transfer

    job = Download(REPO, cache_dir=str(hub_env), endpoint=hub.url)
    with pytest.raises(Cancelled):
        job.run(on_event, cancel)
    plan = events[0]
    assert plan.kind == "plan" and BIG in plan.files and plan.total == plan.need > 0
    assert [p.name for p in hub_env.rglob("*.incomplete")] == [partial_of(hub, hub_env, BIG).name]
    half = os.path.getsize(partial_of(hub, hub_env, BIG))
    assert 0 < half <= len(hub.files[BIG]) // 2
    hub.release.set()

    events.clear()
    path = Download(REPO, cache_dir=str(hub_env), endpoint=hub.url).run(events.append)
    ranged = [r for r in hub.requests if r[0] == "GET" and r[1].endswith(BIG) and r[2]]
    assert ranged and ranged[-1][2] == f"bytes={half}-"  # resumed where it stopped, not from zero
    assert events[-1].kind == "done" and events[-2].done == events[-2].total
    assert any(e.kind == "verifying" for e in events)
    assert path.parent.name == "snapshots" and "models--acme--tiny-sd" in str(path)
    info = inspect_model(path)
    assert info.usable and info.family == "sd1"
    assert (path / BIG).read_bytes() == hub.files[BIG]
    assert not list(hub_env.rglob("*.incomplete"))


def test_corrupt_file_is_deleted_and_reported(served, hub_env):
    hub = served(corrupt=BIG)
    with pytest.raises(DownloadError) as info:
        Download(REPO, cache_dir=str(hub_env), endpoint=hub.url).run()
    assert "does not match its published SHA-256" in str(info.value) and "\n" not in str(info.value)
    assert not any(p.name == "diffusion_pytorch_model.safetensors" and p.parent.name == "unet"
                   for p in hub_env.rglob("*") if p.exists())


def test_not_enough_disk_space_stops_before_fetching(served, hub_env):
    hub = served()
    with pytest.raises(DownloadError) as info:
        Download(REPO, cache_dir=str(hub_env), endpoint=hub.url, reserve_bytes=10**18).run()
    assert "not enough disk space" in str(info.value)
    assert not [r for r in hub.requests if "/resolve/" in r[1]]


def test_unknown_repo_and_bad_ids(served, hub_env):
    hub = served()
    with pytest.raises(DownloadError) as info:
        Download("acme/nothing", cache_dir=str(hub_env), endpoint=hub.url).run()
    assert "acme/nothing" in str(info.value)
    with pytest.raises(DownloadError):
        Download("not a repo id")


def test_file_choice_skips_variants_and_pickles():
    siblings = [{"rfilename": n, "size": 1} for n in (
        "model_index.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin", "text_encoder/model.safetensors", "README.md", "v1-5.ckpt")]
    names = [s["rfilename"] for s in choose_files(siblings, None)]
    assert names == ["model_index.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"]


def test_the_app_process_stays_offline_during_a_download(served, hub_env):
    import os

    import huggingface_hub.constants as c

    hub = served()
    Download(REPO, cache_dir=str(hub_env), endpoint=hub.url).run()
    assert c.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"

"""Faults made for real: a saving process killed with SIGKILL at random moments; a full disk.

The crash loop runs >= 20 rounds by default and >= 200 with ``-m slow``. The full disk is a real
tiny tmpfs mounted in a private user+mount namespace (``unshare -rm``, no root needed, nothing to
unmount if the test dies); where namespaces are not allowed, the ENOSPC error is injected at the
file write of a real subprocess instead. The test reports which one it used.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from engine.library import Library
from engine.library.records import entry_from_file

ROOT = Path(__file__).resolve().parents[2]

SAVER = textwrap.dedent("""
    import sys
    from engine.library import Library
    from tests.library_helpers import make_result
    root, first = sys.argv[1], int(sys.argv[2])
    library = Library(root)
    print("ready", flush=True)
    for i in range(first, first + 10_000):
        entry = library.save(make_result(f"crash test image {i}", seed=i, size=160, noise=True))[0]
        print(entry.path, flush=True)
""")


def _complete_png(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001
        return False


def _crash_loop(tmp_path: Path, rounds: int) -> None:
    root = tmp_path / "outputs"
    rng = random.Random(1234)
    acknowledged: set[str] = set()
    checked: set[str] = set()
    next_seed = 0
    kills_mid_save = 0
    for _ in range(rounds):
        child = subprocess.Popen([sys.executable, "-c", SAVER, str(root), str(next_seed)], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        for _ in range(rng.randrange(3)):
            line = child.stdout.readline().strip()
            if line:
                acknowledged.add(line)
        time.sleep(rng.uniform(0.0, 0.05))  # the fault's timing, not a wait for a condition
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        acknowledged.update(line for line in out.split() if line)
        assert child.returncode == -signal.SIGKILL
        next_seed += 1000
        temps = list(root.glob(".easel-*.png.part"))
        kills_mid_save += bool(temps)

        # After every crash: the index is sound, every row's file is whole, no partial PNG has a final name.
        con = sqlite3.connect(f"{(root / '.easel' / 'index.sqlite').as_uri()}?mode=ro", uri=True)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = [r[0] for r in con.execute("SELECT path FROM images")]
        finally:
            con.close()
        for relative in rows:
            assert _complete_png(root / relative), f"row {relative} has no readable file"
        for png in root.glob("*.png"):
            if png.name not in checked:
                assert _complete_png(png), f"partial PNG under a final name: {png.name}"
                checked.add(png.name)

    with Library(root) as library:
        report = library.reconcile(stale_after=0)  # no saver runs now: every temp file is a leftover
        assert report.unreadable == []
        assert not list(root.glob(".easel-*"))  # leftovers of killed saves are cleaned up
        indexed = {e.path for e in library.query()}
        on_disk = {p.name for p in root.glob("*.png")}
        assert indexed == on_disk
        assert acknowledged <= indexed, "a save reported as done was lost"
        assert library.index.integrity() == "ok"
    assert len(on_disk) >= rounds // 2
    print(f"{rounds} kills: {len(on_disk)} images kept, {kills_mid_save} kills left a temp file mid-save, "
          f"{report.added} files indexed only by the reconciler")


def test_killing_a_saving_process_never_loses_or_corrupts_anything(tmp_path):
    _crash_loop(tmp_path, rounds=20)


@pytest.mark.slow
def test_killing_a_saving_process_200_times(tmp_path):
    _crash_loop(tmp_path, rounds=200)


# ------------------------------------------------------------------------------------ disk full

DISK_FULL = textwrap.dedent("""
    import errno, json, os, sqlite3, subprocess, sys
    from pathlib import Path
    folder, elsewhere, inject = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "inject"
    if inject:
        # No way to mount a small filesystem here: fail the write itself with ENOSPC once the
        # library holds about 300 KB, as a full disk would.
        import engine.outputs as outputs
        real_fdopen = outputs.os.fdopen
        class FullDisk:
            def __init__(self, fh): self.fh = fh
            def write(self, data):
                used = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                if used + len(data) > 300_000:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return self.fh.write(data)
            def __getattr__(self, name): return getattr(self.fh, name)
            def __enter__(self): return self
            def __exit__(self, *exc): return self.fh.__exit__(*exc)
        real_mkstemp, in_library = outputs.tempfile.mkstemp, set()
        def mkstemp(**kwargs):
            fd, path = real_mkstemp(**kwargs)
            if Path(path).parent == folder:
                in_library.add(fd)
            return fd, path
        outputs.tempfile.mkstemp = mkstemp
        def fdopen(fd, mode):
            if fd in in_library:
                in_library.discard(fd)  # fd numbers are reused
                return FullDisk(real_fdopen(fd, mode))
            return real_fdopen(fd, mode)
        outputs.os.fdopen = fdopen
    from engine.library import Library, SaveFailed
    from engine.outputs import save_image
    from tests.library_helpers import make_result
    library = Library(folder)
    saved, failure, result = [], None, None
    for i in range(200):
        result = make_result(f"fill the disk {i}", seed=i, n=2, size=160, noise=True)
        try:
            saved += library.save(result)
        except SaveFailed as exc:
            failure = exc
            break
    rows = {r[0] for r in library.index._con.execute("SELECT path FROM images")}
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and ".easel" not in p.parts)
    rescued = [str(save_image(result, i, elsewhere / f"rescued-{i}.png")) for i in failure.unsaved] if failure else []
    print(json.dumps({
        "errno": failure.errno if failure else None, "message": str(failure), "saved": len(saved),
        "saved_in_failed_batch": [e.path for e in failure.saved] if failure else [], "unsaved": failure.unsaved if failure else [],
        "rows": sorted(rows), "files": files, "integrity": library.index.integrity(), "rescued": rescued,
        "in_memory": [result.images[i].size for i in (failure.unsaved if failure else [])],
    }))
""")


def _run_disk_full(tmp_path: Path) -> tuple[str, dict]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = [sys.executable, "-c", DISK_FULL, str(mount), str(elsewhere)]
    unshare = shutil.which("unshare")
    if unshare and sys.platform.startswith("linux"):
        script = f'mount -t tmpfs -o size=400k easel-test "{mount}" && exec "$@"'
        proc = subprocess.run([unshare, "-rm", "sh", "-c", script, "sh", *args, "tmpfs"], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return "a 400 KB tmpfs", json.loads(proc.stdout)
    proc = subprocess.run([*args, "inject"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return "an injected ENOSPC at the write", json.loads(proc.stdout)


def test_a_full_disk_leaves_no_partial_file_no_row_and_the_image_can_be_saved_elsewhere(tmp_path, capsys):
    how, out = _run_disk_full(tmp_path)
    with capsys.disabled():
        print(f"\n[disk full made with {how}]")
    assert out["errno"] == errno.ENOSPC
    assert "No space left on device" in out["message"] and "\n" not in out["message"]
    assert out["saved"] >= 1 and out["unsaved"]
    # No partial file (no temp, every PNG whole), and no row for an image that is not on disk.
    assert not [f for f in out["files"] if f.endswith(".part")]
    assert len(out["files"]) == out["saved"] + len(out["saved_in_failed_batch"])
    assert set(out["rows"]) <= set(out["files"])
    assert out["integrity"] == "ok"
    # The unsaved images are still in memory and "save elsewhere" writes them whole.
    assert out["in_memory"] and all(size == [160, 160] for size in out["in_memory"])
    for path in out["rescued"]:
        assert entry_from_file(Path(path).parent, Path(path)) is not None
    assert len(out["rescued"]) == len(out["unsaved"])


def test_a_weights_file_the_library_cannot_read_is_named_with_the_reason(tiny_models, monkeypatch):
    """diffusers' "Unable to load weights from checkpoint file for 'F' at 'F'." drops why; the line the
    user gets names the part's file and the reason underneath."""
    import safetensors.torch

    from engine.api import ModelError
    from engine.engine import Engine

    def unreadable(*_args, **_kwargs):
        raise RuntimeError("Error while deserializing header: invalid dtype")

    monkeypatch.setattr(safetensors.torch, "load_file", unreadable)
    with pytest.raises(ModelError) as caught:
        Engine(device="cpu").load(str(tiny_models.get()))
    line = str(caught.value)
    assert "\n" not in line and "Unable to load weights" not in line
    assert "diffusion_pytorch_model.safetensors could not be read as weights (Error while deserializing header" in line

"""Hostile files and full disks, through the real ``easel`` command in a subprocess.

Every case builds its hostile input here, runs one command under a timeout (a hang fails the test,
it does not stall the run) and asserts what the user sees: exit 2 and exactly one ``easel:`` line
on stderr for a user error, never a traceback or a log line; no program run (a canary ``gs`` on
PATH records any Ghostscript run); memory bounded (an address-space limit on the child where torch
is not imported); and the gallery's images and index rows unchanged. The full disk is a real tiny
tmpfs in a private user+mount namespace (``unshare -rm``); the test says so when it cannot make one.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 180  # a hang fails the test after this; real commands here take seconds
SMALL_MEMORY = 2 * 1024**3  # address-space limit for commands that do not import torch


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    """A ``gs`` first on PATH that writes a marker file and then runs the real one: any code path
    that hands a file to Ghostscript leaves the marker. Yields (env, marker)."""
    folder = tmp_path_factory.mktemp("canary")
    marker = folder / "GHOSTSCRIPT-RAN"
    real = shutil.which("gs")
    script = folder / "gs"
    script.write_text(f"#!/bin/sh\necho ran >> '{marker}'\n" + (f"exec '{real}' \"$@\"\n" if real else "exit 1\n"))
    script.chmod(0o755)
    env = dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(ROOT))
    env.pop("EASEL_DATA_DIR", None)
    return env, marker


def easel(canary, *args: str, data: Path | None, memory: int | None = SMALL_MEMORY, wrap: list[str] | None = None,
          timeout: int = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    env, _marker = canary

    def limit():
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    cmd = [*(wrap or []), sys.executable, "-m", "engine.cli", *args, *(["--data-dir", str(data)] if data else [])]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit if not wrap else None)


def one_line(proc: subprocess.CompletedProcess, *words: str, code: int = 2) -> str:
    """The command failed as a user error: exit ``code``, stderr exactly one ``easel:`` line."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("easel: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    return lines[0]


def quiet(proc: subprocess.CompletedProcess) -> None:
    """Nothing of the log reached the terminal."""
    for bad in ("Traceback", "WARNING", "ERROR ", "Warning:", "warnings.warn"):
        assert bad not in proc.stderr, proc.stderr


def png_bytes(size=(16, 16), text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n"
       b"(CANARY-FILE) (w) file dup (written by ghostscript) writestring closefile\n"
       b"newpath 0 0 moveto 16 16 lineto stroke showpage\n%%EOF\n")


def dds() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (8, 8)).save(buf, format="DDS")
    return buf.getvalue()


def other_formats() -> dict[str, bytes]:
    out = {"eps": EPS, "dds": dds()}
    for fmt in ("PCX", "ICO", "PPM", "TGA", "SGI", "IM"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, format=fmt)
        out[fmt.lower()] = buf.getvalue()
    return out


@pytest.fixture
def gallery(tmp_path, canary):
    """A data folder whose gallery holds two real images and their rows; ``unchanged()`` checks
    that the images' bytes and the index rows are still exactly those."""
    data = tmp_path / "data"
    outputs = data / "outputs"
    outputs.mkdir(parents=True)
    for i in range(2):
        (outputs / f"kept-{i}.png").write_bytes(png_bytes(text={"parameters": f"kept {i}\nSteps: 5, Seed: {i}"}))
    proc = easel(canary, "gallery", "list", data=data)
    assert proc.returncode == 0, proc.stderr

    def snapshot():
        files = {p.name: p.read_bytes() for p in sorted(outputs.glob("kept-*.png"))}
        con = sqlite3.connect(outputs / ".easel" / "index.sqlite")
        try:
            rows = sorted(con.execute("SELECT path, prompt, seed FROM images").fetchall())
        finally:
            con.close()
        return files, rows

    before = snapshot()
    assert len(before[1]) == 2

    class G:
        root = data

        @staticmethod
        def unchanged():
            assert snapshot() == before
            assert not list((outputs / ".easel").glob("*damaged*"))

    return G


# ------------------------------------------------------------- 1. no code runs on an image


@pytest.mark.parametrize("fmt", ["eps", "dds", "pcx", "ico", "ppm", "tga", "sgi", "im"])
def test_other_image_formats_named_png_are_refused_everywhere(tmp_path, canary, gallery, tiny_models, fmt):
    _env, marker = canary
    data = other_formats()[fmt]
    bad = tmp_path / f"photo-{fmt}.png"
    bad.write_bytes(data)
    model = str(tiny_models.get())
    one_line(easel(canary, "img2img", "--model", model, "--prompt", "x", "--init", str(bad), data=gallery.root),
             "cannot read image", "PNG, JPEG, WebP")
    if fmt in ("eps", "dds"):  # the other places an image is opened, for the two worst formats
        good = tmp_path / "good.png"
        good.write_bytes(png_bytes())
        one_line(easel(canary, "inpaint", "--model", model, "--prompt", "x", "--init", str(good), "--mask", str(bad),
                       data=gallery.root), "mask", "cannot read image")
        one_line(easel(canary, "upscale", str(bad), "--model", model, "--out", str(tmp_path / "u.png"),
                       data=gallery.root), "cannot read image")
        proc = easel(canary, "gallery", "import", str(bad), data=gallery.root)
        one_line(proc if proc.stderr.count("\n") <= 1 else _last_line(proc), "nothing was imported")
        # Dropped into the outputs folder by hand: listing, rebuilding and thumbnails skip it.
        shutil.copy(bad, gallery.root / "outputs" / f"dropped-{fmt}.png")
        for cmd in (["gallery", "list"], ["gallery", "rebuild"]):
            proc = easel(canary, *cmd, data=gallery.root)
            assert proc.returncode == 0, proc.stderr
            quiet(proc)
        proc = easel(canary, "info", str(bad), data=gallery.root)
        assert proc.returncode == 0 and "no generation settings" in proc.stdout, proc.stderr
        from engine.library.thumbnails import ThumbnailCache

        assert ThumbnailCache(tmp_path / "thumbs").get(bad, "x.png", 1, 1) is None
    assert not marker.exists(), "Ghostscript ran on an image file"
    assert not (ROOT / "CANARY-FILE").exists() and not (gallery.root / "CANARY-FILE").exists()


def _last_line(proc):
    """``gallery import`` prints what it skipped, then its one error line: check the error line."""
    lines = proc.stderr.splitlines()
    assert all(not l.startswith("Traceback") for l in lines)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, lines[-1] + "\n")


def test_the_canary_is_real_ghostscript_would_run_on_an_eps_opened_the_old_way(tmp_path, canary):
    """The canary catches a Ghostscript run: Pillow left to itself does hand an EPS to ``gs``."""
    if not shutil.which("gs"):
        pytest.skip("Ghostscript is not installed here (apt-get install ghostscript makes the canary real)")
    env, marker = canary
    bad = tmp_path / "x.png"
    bad.write_bytes(EPS)
    code = "import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.load()"
    subprocess.run([sys.executable, "-c", code, str(bad)], env=env, capture_output=True, timeout=60, cwd=tmp_path)
    assert marker.exists()
    marker.unlink()


def test_image_gate_accepts_what_the_readme_promises_and_refuses_bombs(tmp_path):
    from engine.api import ImageError
    from engine.images import open_image

    for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"):
        buf = io.BytesIO()
        Image.new("RGB", (24, 16), (10, 200, 10)).save(buf, format=fmt)
        path = tmp_path / f"x.{fmt.lower()}"
        path.write_bytes(buf.getvalue())
        assert open_image(path).size == (24, 16)
    # A header claiming 50,000 x 50,000 in each accepted container: refused before decoding.
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    bmp = b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 60_000, 60_000, 1, 24, 0,
                                                                      0, 0, 0, 0, 0)
    for name, data in (("bomb.png", bomb), ("bomb.bmp", bmp)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match="refused"):
            open_image(tmp_path / name)


# ------------------------------------------------------------------------------- 2. no hang


def test_fifos_devices_and_loops_in_model_folders_never_block(tmp_path, canary, tiny_models):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copytree(tiny_models.get(), folder / "good")
    shutil.copy(tiny_models.get(single_file=True), folder / "single.safetensors")
    os.mkfifo(folder / "single.yaml")  # the A1111 config beside a checkpoint
    (folder / "fifo-folder" / "unet").mkdir(parents=True)
    os.mkfifo(folder / "fifo-folder" / "model_index.json")
    (folder / "taesd").mkdir()
    os.mkfifo(folder / "taesd" / "config.json")
    os.mkfifo(folder / "pipe.safetensors")
    os.symlink("/dev/zero", folder / "zero.safetensors")
    os.symlink("loop.safetensors", folder / "loop.safetensors")
    os.mkfifo(tmp_path / "settings.json")  # the data folder's own settings file
    proc = easel(canary, "models", "list", "--folder", str(folder), data=tmp_path)
    assert proc.returncode == 0, proc.stderr
    quiet(proc)
    assert "good" in proc.stdout and "single" in proc.stdout
    for bad in ("fifo-folder", "pipe.safetensors", "zero.safetensors", "loop.safetensors"):
        line = one_line(easel(canary, "generate", "--model", str(folder / bad), "--prompt", "x", data=tmp_path / "d"))
        assert "\n" not in line


def test_fifo_and_device_as_images_never_block(tmp_path, canary, tiny_models):
    os.mkfifo(tmp_path / "fifo.png")
    os.symlink("/dev/zero", tmp_path / "zero.png")
    os.symlink("/dev/urandom", tmp_path / "random.png")
    model = str(tiny_models.get())
    for name in ("fifo.png", "zero.png", "random.png"):
        one_line(easel(canary, "img2img", "--model", model, "--prompt", "x", "--init", str(tmp_path / name),
                       data=tmp_path / "d"), "not a file easel can read")
        proc = easel(canary, "info", str(tmp_path / name), data=tmp_path / "d")
        assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr


def _sparse_png(path: Path, size: int) -> None:
    """A PNG signature and IHDR, then ``size`` bytes of holes: reads as endless zero-length chunks."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + ihdr)
        f.truncate(size)


def test_a_huge_sparse_png_is_refused_quickly_with_bounded_memory(tmp_path, canary, gallery):
    bad = tmp_path / "huge.png"
    _sparse_png(bad, 6 * 1024**3)  # 6 GB of holes: no disk used
    proc = easel(canary, "info", str(bad), data=gallery.root, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    proc = easel(canary, "gallery", "import", str(bad), data=gallery.root, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    os.link(bad, gallery.root / "outputs" / "huge.png")
    proc = easel(canary, "gallery", "list", data=gallery.root, timeout=60)
    assert proc.returncode == 0, proc.stderr
    quiet(proc)
    assert "huge.png" not in proc.stdout
    (gallery.root / "outputs" / "huge.png").unlink()
    gallery.unchanged()


def test_many_tiny_chunks_and_a_text_bomb_are_bounded(tmp_path, canary):
    # A zTXt chunk that inflates 40 MB from a few KB, and 200,000 unknown chunks before IEND.
    png = png_bytes()
    head, iend = png[:-12], png[-12:]
    bomb = chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"a" * 40_000_000, 9))
    many = chunk(b"teXt", b"") * 200_000
    path = tmp_path / "bomb.png"
    path.write_bytes(head + bomb + many + iend)
    proc = easel(canary, "info", str(path), "--json", data=tmp_path / "d", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert any("too large" in w or "inflates" in w for w in json.loads(proc.stdout)["warnings"])


# ----------------------------------------------------- 3 and 5: one line, no traceback, exit 2


def test_hostile_model_index_and_absurd_options_give_one_line(tmp_path, canary, tiny_models):
    evil = tmp_path / "evil"
    shutil.copytree(tiny_models.get(), evil)
    index = json.loads((evil / "model_index.json").read_text())
    index["unet"] = ["os", "system"]
    (evil / "model_index.json").write_text(json.dumps(index))
    proc = easel(canary, "generate", "--model", str(evil), "--prompt", "x", "--steps", "2", "--width", "64",
                 "--height", "64", data=tmp_path / "d", memory=None)
    one_line(proc)
    quiet(proc)
    model = str(tiny_models.get())
    one_line(easel(canary, "generate", "--model", model, "--prompt", "x", "--device", "tpu:7", data=tmp_path / "d"),
             "--device")
    one_line(easel(canary, "generate", "--model", "", "--prompt", "x", data=tmp_path / "d"), "--model", "empty")
    one_line(easel(canary, "gallery", "list", "--data-dir", "", data=None), "--data-dir", "empty")
    # Oversized JSON where a config belongs (sparse: 50 MB of holes).
    big = tmp_path / "big"
    shutil.copytree(tiny_models.get(), big)
    with open(big / "model_index.json", "r+b") as f:
        f.truncate(50_000_000)
    one_line(easel(canary, "generate", "--model", str(big), "--prompt", "x", data=tmp_path / "d"), "large")


def _rewrite_header(path: Path, change) -> None:
    """Edit a safetensors file's JSON header in place (``change(header)``), keeping the data."""
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    change(header)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


@pytest.mark.parametrize("damage, words", [
    ("shape", ("unet/", "does not match its config", "conv_in.bias")),
    ("missing", ("unet/", "lacks weights", "conv_in.bias")),
    ("config", ("text_encoder/", "does not match its config")),
])
def test_weights_that_do_not_fit_their_config_are_named_in_plain_words(tmp_path, canary, tiny_models, damage, words):
    """Not the library's "Cannot load  because … expected shape …", nor an internal error about meta
    tensors: which part, which tensor, and what that means."""
    model = tmp_path / damage
    shutil.copytree(tiny_models.get(), model)
    unet = model / "unet" / "diffusion_pytorch_model.safetensors"
    if damage == "shape":
        _rewrite_header(unet, lambda h: h["conv_in.bias"].update(shape=[1, *h["conv_in.bias"]["shape"]]))
    elif damage == "missing":
        _rewrite_header(unet, lambda h: h.__setitem__("renamed.conv_in.bias", h.pop("conv_in.bias")))
    else:
        config = model / "text_encoder" / "config.json"
        config.write_text(json.dumps(dict(json.loads(config.read_text()), hidden_size=48)))
    proc = easel(canary, "generate", "--model", str(model), "--prompt", "x", "--steps", "1", "--width", "64",
                 "--height", "64", "--out", str(tmp_path / "o.png"), data=tmp_path / "d", memory=None)
    line = one_line(proc, *words)
    quiet(proc)
    assert "expected shape" not in line and "ignore_mismatched_sizes" not in line
    assert not (tmp_path / "o.png").exists()


def test_damaged_and_newer_index_and_odd_data_folders(tmp_path, canary, gallery):
    index = gallery.root / "outputs" / ".easel" / "index.sqlite"
    con = sqlite3.connect(index)
    con.execute("PRAGMA user_version = 999")
    con.commit()
    con.close()
    proc = easel(canary, "gallery", "list", data=gallery.root)
    assert proc.returncode == 0, proc.stderr
    quiet(proc)
    index.write_bytes(b"this is not a database" * 100)
    proc = easel(canary, "gallery", "list", data=gallery.root)
    assert proc.returncode == 0 and "kept-0.png" in proc.stdout, proc.stderr
    quiet(proc)
    # A data folder that is a file; a lock path that is a folder.
    (tmp_path / "file").write_text("x")
    one_line(easel(canary, "gallery", "list", data=tmp_path / "file"), "is a file")
    other = tmp_path / "other"
    (other / "outputs" / ".easel" / "lock").mkdir(parents=True)
    one_line(easel(canary, "gallery", "list", data=other), "lock")


def test_clip_skip_past_the_model_from_an_images_metadata(tmp_path, canary, tiny_models):
    made = tmp_path / "made.png"
    made.write_bytes(png_bytes((64, 64), {"parameters": "a cat\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 3, "
                                                       "Size: 64x64, Clip skip: 12"}))
    proc = easel(canary, "regenerate", str(made), "--model", str(tiny_models.get()), "--out", str(tmp_path / "o.png"),
                 data=tmp_path / "d", memory=None)
    one_line(proc, "clip_skip", "at most")
    quiet(proc)


# ------------------------------------------------------------------- 4. full and read-only disks


def _in_namespace(canary, script: str, *args: str) -> subprocess.CompletedProcess | None:
    """Run ``sh -c script`` as root of a private user+mount namespace (tmpfs mounts allowed, nothing
    to clean up); None where this machine does not allow it."""
    unshare = shutil.which("unshare")
    if not unshare or not sys.platform.startswith("linux"):
        return None
    env, _ = canary
    probe = subprocess.run([unshare, "-rm", "sh", "-c", "mount -t tmpfs t /mnt 2>/dev/null || mount -t tmpfs t /tmp"],
                           capture_output=True, timeout=30)
    if probe.returncode != 0:
        return None
    return subprocess.run([unshare, "-rm", "sh", "-c", script, "sh", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT * 2)


def _fs_or_skip(proc):
    if proc is None:
        pytest.skip("no user+mount namespace here: a real full disk cannot be made (see test_library_faults "
                    "for the injected ENOSPC)")
    return proc


def test_a_full_disk_keeps_the_index_and_refuses_before_generating(tmp_path, canary, gallery, tiny_models):
    """The gallery on a full tmpfs: generate says "the disk is full" before any work; gallery list
    still works; the index is never moved aside."""
    disk = tmp_path / "disk"
    disk.mkdir()
    py = sys.executable
    script = (f'mount -t tmpfs -o size=1m full "{disk}" && cp -a "{gallery.root}" "{disk}/data" && '
              f'(dd if=/dev/zero of="{disk}/filler" bs=4k 2>/dev/null; true) && '
              f'{py} -m engine.cli generate --model "$1" --prompt x --steps 2 --width 64 --height 64 '
              f'--data-dir "{disk}/data" 2> "{tmp_path}/gen.err"; echo "gen=$?" > "{tmp_path}/rc"; '
              f'{py} -m engine.cli gallery list --data-dir "{disk}/data" > "{tmp_path}/list.out" 2> "{tmp_path}/list.err";'
              f' echo "list=$?" >> "{tmp_path}/rc"; rm -f "{disk}/filler"; cp -a "{disk}/data/." "{gallery.root}/"')
    _fs_or_skip(_in_namespace(canary, script, str(tiny_models.get())))
    rc = (tmp_path / "rc").read_text().split()
    gen_err = (tmp_path / "gen.err").read_text()
    assert rc[0] == "gen=2" and gen_err.count("\n") == 1 and "the disk is full" in gen_err, gen_err
    list_err = (tmp_path / "list.err").read_text()
    # Listing reconciles first, which needs a write: on a full disk it works or says why, in one line.
    assert rc[1] == "list=0" or (rc[1] == "list=2" and list_err.count("\n") == 1 and "disk is full" in list_err), \
        list_err
    gallery.unchanged()


def test_when_only_the_index_cannot_be_written_the_image_is_kept(tmp_path, canary, gallery, tiny_models):
    """The index's folder on its own full tmpfs, the images' folder with room: the image is saved,
    one note says the disk is full, and the index file is left exactly as it was."""
    meta = gallery.root / "outputs" / ".easel"
    keep = tmp_path / "meta-copy"
    shutil.copytree(meta, keep)
    py = sys.executable
    script = (f'mount -t tmpfs -o size=200k meta "{meta}" && cp -a "{keep}/." "{meta}/" && '
              f'(dd if=/dev/zero of="{meta}/filler" bs=1k 2>/dev/null; true) && '
              f'{py} -m engine.cli generate --model "$1" --prompt "kept image" --steps 2 --width 64 --height 64 '
              f'--seed 7 --data-dir "{gallery.root}" > "{tmp_path}/gen.out" 2> "{tmp_path}/gen.err"; '
              f'echo $? > "{tmp_path}/rc"; rm -f "{meta}/filler"; cp -a "{meta}/index.sqlite" "{tmp_path}/after.sqlite"; '
              f'ls -a "{meta}" > "{tmp_path}/meta.ls"')
    _fs_or_skip(_in_namespace(canary, script, str(tiny_models.get())))
    err = (tmp_path / "gen.err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "0", err
    assert "Traceback" not in err and "the disk is full" in err
    made = [p for p in (gallery.root / "outputs").glob("*.png") if not p.name.startswith("kept-")]
    assert len(made) == 1 and "kept_image" in made[0].name
    assert (tmp_path / "after.sqlite").read_bytes() == (keep / "index.sqlite").read_bytes()
    assert "damaged" not in (tmp_path / "meta.ls").read_text()
    made[0].unlink()
    gallery.unchanged()
    # The next start indexes the kept image (the reconciler), with room on the disk again.
    proc = easel(canary, "gallery", "list", data=gallery.root)
    assert proc.returncode == 0


def test_a_read_only_gallery_is_refused_before_generating(tmp_path, canary, gallery, tiny_models):
    py = sys.executable
    out = gallery.root / "outputs"
    script = (f'mount --bind "{out}" "{out}" && mount -o remount,bind,ro "{out}" && '
              f'{py} -m engine.cli generate --model "$1" --prompt x --steps 2 --width 64 --height 64 '
              f'--data-dir "{gallery.root}" 2> "{tmp_path}/gen.err"; echo $? > "{tmp_path}/rc"')
    _fs_or_skip(_in_namespace(canary, script, str(tiny_models.get())))
    err = (tmp_path / "gen.err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "2" and err.count("\n") == 1, err
    assert "read-only" in err and "Traceback" not in err
    gallery.unchanged()


def test_out_to_a_device_is_refused_and_saved_pngs_follow_the_umask(tmp_path, canary, tiny_models):
    one_line(easel(canary, "generate", "--model", str(tiny_models.get()), "--prompt", "x", "--out", "/dev/full",
                   data=tmp_path / "d"), "--out")
    from engine.outputs import write_png_atomic

    old = os.umask(0o022)
    os.umask(old)
    path = write_png_atomic(tmp_path / "x.png", Image.new("RGB", (8, 8)))
    assert path.stat().st_mode & 0o777 == 0o666 & ~old


# ---------------------------------------------------------------- 6 and 7: bounded work


def test_a_config_out_of_proportion_to_its_weights_is_refused_before_allocating(tmp_path, canary, tiny_models):
    evil = tmp_path / "evil"
    shutil.copytree(tiny_models.get(), evil)
    unet = json.loads((evil / "unet" / "config.json").read_text())
    unet["block_out_channels"] = [40_000, 80_000]
    (evil / "unet" / "config.json").write_text(json.dumps(unet))
    sched = json.loads((evil / "scheduler" / "scheduler_config.json").read_text())
    proc = easel(canary, "generate", "--model", str(evil), "--prompt", "x", "--steps", "2", "--width", "64",
                 "--height", "64", data=tmp_path / "d", memory=16 * 1024**3)
    one_line(proc, "unet/config.json", "damaged")
    # The same rule for a weightless part, in-process (no second torch start-up).
    from engine.api import ModelError
    from engine.files.configcheck import check_folder_proportions

    (evil / "unet" / "config.json").write_text((tiny_models.get() / "unet" / "config.json").read_text())
    check_folder_proportions(evil)  # the real configs pass
    sched["num_train_timesteps"] = 10**12
    (evil / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))
    with pytest.raises(ModelError, match="num_train_timesteps"):
        check_folder_proportions(evil)


def test_a_huge_prompt_in_metadata_is_refused_at_once(tmp_path, canary, tiny_models):
    made = tmp_path / "long.png"
    made.write_bytes(png_bytes((64, 64), {"parameters": "cat " * 250_000 + "\nSteps: 2, Seed: 3, Size: 64x64"}))
    proc = easel(canary, "regenerate", str(made), "--model", str(tiny_models.get()), "--out", str(tmp_path / "o.png"),
                 data=tmp_path / "d")
    one_line(proc, "prompt", "limit")
    from engine.api import MAX_PROMPT_CHARS, GenerationRequest, InvalidRequest

    with pytest.raises(InvalidRequest, match="negative_prompt"):
        GenerationRequest(prompt="x", negative_prompt="y" * (MAX_PROMPT_CHARS + 1))


# ------------------------------------------------------------- 8 and 9: the download mirror


class HostileHub:
    """A hub whose model listing names files and hashes that climb out of the cache."""

    def __init__(self, siblings: list[dict], sha: str = "0123456789abcdef0123456789abcdef01234567"):
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                hub.requests.append(self.path)
                body = json.dumps({"id": "acme/evil", "sha": sha, "siblings": siblings}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("sibling", [
    {"rfilename": "unet/model.safetensors", "size": 10,
     "lfs": {"sha256": "../../../victim", "size": 10, "pointerSize": 130}},
    {"rfilename": "../../victim.safetensors", "size": 10},
    {"rfilename": "/etc/victim.safetensors", "size": 10},
    {"rfilename": "unet/\x1b[31mred\n.safetensors", "size": 10},
])
def test_a_hostile_mirror_cannot_touch_files_outside_the_cache(tmp_path, monkeypatch, sibling):
    from engine.api import DownloadError
    from engine.download import Download

    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "victim.incomplete").write_text("precious too")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hub = HostileHub([{"rfilename": "model_index.json", "size": 2}, sibling])
    try:
        with pytest.raises(DownloadError) as info:
            Download("acme/evil", cache_dir=str(tmp_path / "cache" / "hub"), endpoint=hub.url).run()
    finally:
        hub.close()
    assert "unsafe" in str(info.value) or "malformed" in str(info.value)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert victim.read_text() == "precious" and (tmp_path / "victim.incomplete").read_text() == "precious too"
    assert not [r for r in hub.requests if "/resolve/" in r]  # nothing fetched


def test_offline_download_says_the_hub_cannot_be_reached(tmp_path, canary):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env, _ = canary
    env = dict(env, HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "models", "download", "acme/tiny", "--data-dir",
                           str(tmp_path / "d")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    one_line(proc, "could not reach the Hugging Face hub")


# ------------------------------------------------------------------------- 10. message hygiene


def test_names_with_newlines_and_escapes_stay_one_line(tmp_path, canary, tiny_models):
    evil = tmp_path / "a\nb\x1b[2J\x1b[31mred.png"
    evil.write_bytes(b"not an image at all")
    line = one_line(easel(canary, "img2img", "--model", str(tiny_models.get()), "--prompt", "x", "--init", str(evil),
                          data=tmp_path / "d"))
    assert "\x1b" not in line and "\\x1b" in line and "\\n" in line
    line = one_line(easel(canary, "generate", "--model", str(tmp_path / "no\nsuch\x1b[0m"), "--prompt", "x",
                          data=tmp_path / "d"))
    assert "\x1b" not in line
    one_line(easel(canary, "models", "download", "acme/x\x1b[31m\nspoof", data=tmp_path / "d"), "not a hugging face")


def test_the_libraries_own_error_lines_go_to_the_log_file_not_the_terminal(tmp_path, canary):
    """diffusers and transformers each put their own stderr handler on their loggers; an error they log
    while a model loads must reach Easel's log file only."""
    script = (
        "import logging, sys\n"
        "from engine.cli import setup_logging\n"
        "from engine.core.loading import quiet_libraries\n"
        f"log = setup_logging({str(tmp_path / 'd')!r})\n"
        "quiet_libraries()\n"
        "from diffusers.utils import logging as d\n"
        "from transformers.utils import logging as t\n"
        "d.get_logger('diffusers.models.x').error('DIFFUSERS-SAYS-ERROR')\n"
        "t.get_logger('transformers.modeling_utils').error('TRANSFORMERS-SAYS-ERROR')\n"
        "print(log)\n"
    )
    env, _marker = canary
    (tmp_path / "d").mkdir()
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert "SAYS-ERROR" not in proc.stderr, proc.stderr
    logged = Path(proc.stdout.strip()).read_text(encoding="utf-8")
    assert "DIFFUSERS-SAYS-ERROR" in logged and "TRANSFORMERS-SAYS-ERROR" in logged


def test_a_damaged_tiff_gives_one_line_and_libtiff_stays_off_the_terminal(tmp_path, canary, tiny_models):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 90, 9)).save(buf, format="TIFF", compression="tiff_lzw")
    data = bytearray(buf.getvalue())
    for i in range(16, 60):  # the LZW strip: libtiff prints "Using code not yet in table" for this
        data[i] ^= 0x5A
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    one_line(easel(canary, "img2img", "--model", str(tiny_models.get()), "--prompt", "x", "--init", str(bad),
                   data=tmp_path / "d"), "cannot read image")


def test_a_pickle_pth_refusal_carries_no_terminal_escapes(tmp_path, canary):
    import torch

    folder = tmp_path / "ESRGAN"
    folder.mkdir()
    torch.save({"module": torch.nn.Linear(2, 2)}, folder / "evil.pth")  # a pickled module, not weights
    src = tmp_path / "src.png"
    src.write_bytes(png_bytes((32, 32)))
    line = one_line(easel(canary, "upscale", str(src), "--model", str(folder / "evil.pth"), "--out",
                          str(tmp_path / "o.png"), data=tmp_path / "d", memory=None), "not opened")
    assert "\x1b" not in line and "[0m" not in line and "[1m" not in line


def test_an_a1111_line_with_negative_steps_is_still_read_as_parameters():
    from engine.metadata import parse_a1111

    meta = parse_a1111("a cat\nNegative prompt: dog\nSteps: -5, Seed: 3, Size: 64x64")
    assert meta.fields["negative_prompt"] == "dog" and meta.fields["steps"] == 1 and meta.fields["seed"] == 3
    assert any("steps -5" in w for w in meta.warnings)


def test_an_image_whose_save_fails_after_generating_is_rescued(tmp_path, shared_engine, tiny_models, monkeypatch):
    """The fault is real: the output folder's path is taken by a file when the save comes."""
    import tempfile
    from types import SimpleNamespace

    from engine.api import EaselError, GenerationRequest
    from engine.cli import save_or_rescue
    from engine.metadata import read_metadata

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    result = shared_engine.generate(GenerationRequest(prompt="rescue me", model=str(tiny_models.get()), steps=2,
                                                      width=64, height=64, seed=11))
    blocked = tmp_path / "out"
    blocked.write_text("a file where the folder should be")
    with pytest.raises(EaselError) as info:
        save_or_rescue(SimpleNamespace(data_dir=str(tmp_path / "d")), result, str(blocked), embed=True)
    line = str(info.value)
    assert "\n" not in line and "kept in" in line
    rescued = list((tmp_path / "tmp" / "easel-rescued").glob("*.png"))
    assert len(rescued) == 1 and read_metadata(rescued[0]).fields["seed"] == 11

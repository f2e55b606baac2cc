"""The gallery library: saving, search and filters, rebuild, outside edits, trash, migrations, the lock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.library import Filter, Library, LibraryLocked
from engine.library.schema import SCHEMA_V1, SCHEMA_VERSION, run_script
from engine.metadata import read_metadata
from engine.outputs import write_png_atomic
from tests.library_helpers import make_result

ROOT = Path(__file__).resolve().parents[2]
A1111 = ("a lighthouse at dusk, <lora:film_grain:0.8>\nsecond line\nNegative prompt: blurry, lowres\n"
         'Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 4242, Size: 64x64, '
         'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "film_grain: 0123456789ab"')


def a1111_png(path: Path, text: str = A1111, colour=(10, 20, 30)) -> Path:
    info = PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (64, 64), colour).save(path, pnginfo=info)
    return path


def gallery(library: Library, flt: Filter = Filter()) -> list[tuple]:
    """What a user sees, independent of row ids."""
    return [(e.path, e.prompt, e.negative_prompt, e.seed, e.favourite, e.model_name, e.width, round(e.created, 3))
            for e in library.query(flt)]


@pytest.fixture
def library(tmp_path):
    lib = Library(tmp_path / "outputs")
    yield lib
    lib.close()


def test_saved_images_are_files_with_metadata_and_rows_newest_first(library):
    first = library.save(make_result("a castle on a hill", seed=5, n=2))
    second = library.save(make_result("a red barn at dusk", seed=1234))
    assert [e.seed for e in library.query()] == [1234, 6, 5]  # newest first, batch in seed order
    for entry in first + second:
        path = library.absolute(entry)
        assert path.parent == library.root and path.is_file()
        meta = read_metadata(path)
        assert meta.fields["seed"] == entry.seed and meta.fields["prompt"] == entry.prompt
    assert not list(library.root.glob(".easel-*"))


def test_search_by_words_prefixes_phrases_exclusions_and_seed(library):
    library.save(make_result("A Castle on a hill, golden hour", seed=11))
    library.save(make_result("a red barn at dusk", seed=22222, negative="castle"))
    library.save(make_result("portrait of a knight, ünïcode café", seed=33))

    def prompts(text):
        return sorted(e.prompt for e in library.query(Filter(text=text)))

    assert prompts("cast") == ["A Castle on a hill, golden hour", "a red barn at dusk"]  # prompt or negative
    assert prompts('"golden hour"') == ["A Castle on a hill, golden hour"]
    assert prompts('"hour golden"') == []
    assert prompts("castle -barn") == ["A Castle on a hill, golden hour"]
    assert prompts("-castle") == ["portrait of a knight, ünïcode café"]
    assert prompts("cafe") == ["portrait of a knight, ünïcode café"]  # accents ignored
    assert prompts("22222") == ["a red barn at dusk"]  # a seed
    assert prompts('knight "unclosed') == []
    for odd in ('"', "-", "AND", "NOT OR", "*", "(x", "a:b", "'; DROP TABLE images; --"):
        library.query(Filter(text=odd))  # never a syntax error


def test_filters_by_model_favourite_size_and_date(library):
    old = library.save(make_result("old one", seed=1, model="sdxl_base"))[0]
    library.save(make_result("square", seed=2, size=64))
    library.save(make_result("bigger", seed=3, size=96))
    library.set_favourite([old.id], True)
    assert [e.prompt for e in library.query(Filter(model="SDXL_BASE"))] == ["old one"]
    assert [e.prompt for e in library.query(Filter(favourites=True))] == ["old one"]
    assert [e.prompt for e in library.query(Filter(size=(96, 96)))] == ["bigger"]
    assert library.index.model_names() == ["dreamshaper_8", "sdxl_base"]
    assert set(library.index.sizes()) == {(64, 64), (96, 96)}
    assert library.query(Filter(since=time.time() + 60)) == []
    assert len(library.query(Filter(since=time.time() - 60, until=time.time() + 60))) == 3


def test_rebuild_from_the_files_alone_gives_the_same_gallery(tmp_path):
    root = tmp_path / "outputs"
    with Library(root) as lib:
        for seed in range(6):
            lib.save(make_result(f"picture number {seed}\nwith a second line", seed=seed * 10))
        a1111_png(root / "from-a1111.png")
        lib.reconcile()
        ids = [e.id for e in lib.query()]
        lib.set_favourite(ids[1:3], True)
        lib.trash([ids[4]])
        before, before_trash = gallery(lib), gallery(lib, Filter(trash=True))
    for f in (root / ".easel").glob("index.sqlite*"):
        f.unlink()
    with Library(root) as lib:
        assert lib.index.count() == 0
        report = lib.reconcile()
        assert report.added == 7
        assert gallery(lib) == before
        assert gallery(lib, Filter(trash=True)) == before_trash
        assert sum(e.favourite for e in lib.query()) == 2
        assert lib.query(Filter(text="4242"))[0].prompt.startswith("a lighthouse at dusk")


def test_easel_gallery_rebuild_command_gives_the_same_gallery(tmp_path, capsys):
    from engine.cli import main

    data = tmp_path / "data"
    with Library(data / "outputs") as lib:
        lib.save(make_result("one", seed=1))
        lib.save(make_result("two", seed=2))
        before = gallery(lib)
    assert main(["gallery", "rebuild", "--data-dir", str(data)]) == 0
    assert "2 image(s) indexed" in capsys.readouterr().out
    with Library(data / "outputs") as lib:
        assert gallery(lib) == before


def test_outside_edits_while_closed_are_reconciled(tmp_path):
    root = tmp_path / "outputs"
    with Library(root) as lib:
        kept, deleted, edited = (lib.save(make_result(p, seed=s))[0] for p, s in (("kept", 1), ("deleted", 2), ("edited", 3)))
        paths = {e.prompt: lib.absolute(e) for e in (kept, deleted, edited)}
    paths["deleted"].unlink()
    a1111_png(paths["edited"], A1111.replace("a lighthouse", "a windmill"))
    (root / "sub").mkdir()
    a1111_png(root / "sub" / "copied in.png")
    (root / "notes.txt").write_text("not an image")
    (root / "cut-off.png").write_bytes(paths["kept"].read_bytes()[:300])
    (root / ".easel-abc.png.part").write_bytes(b"\x89PNG half")  # an interrupted save, long ago
    os.utime(root / ".easel-abc.png.part", (time.time() - 3600, time.time() - 3600))
    (root / ".easel-new.png.part").write_bytes(b"\x89PNG half")  # maybe a save in progress: kept
    with Library(root) as lib:
        report = lib.reconcile()
        assert (report.added, report.updated, len(report.removed)) == (1, 1, 1)
        assert report.unreadable == ["cut-off.png"] and report.temp_files_removed == 1
        prompts = sorted(e.prompt.split(",")[0] for e in lib.query())
        assert prompts == ["a lighthouse at dusk", "a windmill at dusk", "kept"]
        assert lib.query(Filter(text="windmill"))[0].path == paths["edited"].name
        assert lib.query(Filter(text="lighthouse"))[0].path == "sub/copied in.png"
        assert not (root / ".easel-abc.png.part").exists() and (root / ".easel-new.png.part").exists()
        assert lib.reconcile().changed is False  # nothing new the second time


def test_a_damaged_index_is_moved_aside_and_rebuilt(tmp_path):
    root = tmp_path / "outputs"
    with Library(root) as lib:
        lib.save(make_result("survivor", seed=9))
    index = root / ".easel" / "index.sqlite"
    for f in root.glob(".easel/index.sqlite-*"):
        f.unlink()
    index.write_bytes(b"this is not a database" * 100)
    with Library(root) as lib:
        assert "damaged" in lib.notice and "rebuilt" in lib.notice
        lib.reconcile()
        assert [e.prompt for e in lib.query()] == ["survivor"]
    assert list((root / ".easel").glob("index.damaged-*.sqlite"))


def test_a_v1_index_is_backed_up_then_migrated_forward(tmp_path):
    root = tmp_path / "outputs"
    root.mkdir()
    png = a1111_png(root / "old.png")
    Image.new("RGB", (64, 64)).save(root / "plain.png")
    index = root / ".easel" / "index.sqlite"
    index.parent.mkdir()
    con = sqlite3.connect(index, isolation_level=None)
    run_script(con, SCHEMA_V1)
    con.execute("INSERT INTO images (path, prompt, negative_prompt, seed, model, created) VALUES (?, ?, ?, ?, ?, ?)",
                ("old.png", "a lighthouse at dusk", "blurry", 4242, "v1-5-pruned-emaonly", 1_600_000_000.0))
    con.close()
    with Library(root) as lib:
        assert lib.index.migrated_from == 1
        backup = lib.index.backup
        assert backup is not None and backup.is_file()
        rows = sqlite3.connect(backup).execute("SELECT path, prompt FROM images").fetchall()
        assert rows == [("old.png", "a lighthouse at dusk")]
        assert sqlite3.connect(backup).execute("PRAGMA user_version").fetchone()[0] == 1
        assert lib.index.integrity() == "ok"
        # The migrated row is searchable at once, and the reconciler fills in what v1 did not keep.
        assert [e.path for e in lib.query(Filter(text="lighthouse"))] == ["old.png"]
        report = lib.reconcile()
        assert report.updated == 1 and report.added == 1
        entry = lib.query(Filter(text="lighthouse"))[0]
        assert (entry.width, entry.seed, entry.model_hash, entry.size_bytes) == (64, 4242, "6ce0161689", png.stat().st_size)
    con = sqlite3.connect(index)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_index_from_a_newer_easel_opens_read_only_and_saving_still_keeps_the_file(tmp_path):
    root = tmp_path / "outputs"
    with Library(root) as lib:
        lib.save(make_result("before", seed=1))
    con = sqlite3.connect(root / ".easel" / "index.sqlite")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with Library(root) as lib:
        assert lib.read_only and "newer version of Easel" in lib.notice
        assert [e.prompt for e in lib.query()] == ["before"]
        saved = lib.save(make_result("after", seed=2))
        assert lib.absolute(saved[0]).is_file()
        assert lib.index.count() == 1
        lib.reconcile()  # does not write
    con = sqlite3.connect(root / ".easel" / "index.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 1


def test_a_second_instance_is_refused_and_the_lock_dies_with_its_owner(tmp_path):
    root = tmp_path / "data" / "outputs"
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from engine.library import Library; "
         f"lib = Library({str(root)!r}); print('owned', flush=True); sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "owned"
        with pytest.raises(LibraryLocked) as caught:
            Library(root)
        assert f"process {owner.pid}" in str(caught.value)
        proc = subprocess.run([sys.executable, "-m", "engine.cli", "gallery", "rebuild", "--data-dir",
                               str(tmp_path / "data")], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and "already using the library" in proc.stderr
        # Reading is fine while the owner runs.
        with Library(root, exclusive=False) as reader:
            assert reader.read_only and reader.query() == []
    finally:
        owner.kill()
        owner.wait()
    with Library(root) as lib:  # killed, not closed: the OS released the lock
        assert lib.lock.held


@pytest.mark.parametrize("prompt", ["../../etc/passwd", "..\\..\\windows\\system32", "CON", "nul", "a/b/../c",
                                    "\x00\x01bad", "   ", "..", "aux.txt", "ｃｏｎ", "x" * 400, "日本語の城"])
def test_file_names_from_prompts_cannot_escape_or_use_reserved_names(library, prompt):
    entry = library.save(make_result(prompt, seed=3))[0]
    path = library.absolute(entry)
    assert path.parent == library.root and path.is_file()
    stem = path.stem.split("-", 3)[-1]
    assert stem.lower() not in ("con", "nul", "aux", "prn", "", ".", "..")
    assert "/" not in entry.path and "\\" not in entry.path and ".." not in entry.path
    assert len(path.name.encode()) < 255


def test_import_sanitises_names_and_skips_what_is_not_an_image(library, tmp_path):
    src = tmp_path / "elsewhere"
    src.mkdir()
    a1111_png(src / "CON.png")
    a1111_png(src / "..evil name!.png")
    (src / "fake.png").write_bytes(b"not really a png")
    report = library.import_files([src / "CON.png", src / "..evil name!.png", src / "fake.png", tmp_path / "missing.png"])
    assert sorted(e.path for e in report.added) == ["evil_name.png", "image.png"]
    assert [why for _, why in report.skipped] == ["not an image Easel can read, or the file is damaged", "no such file"]
    assert (library.root / "image.png").read_bytes() == (src / "CON.png").read_bytes()  # bytes kept exactly


def test_metadata_embedding_off_saves_no_prompt_seed_or_model(library):
    entry = library.save(make_result("secret prompt", seed=77), embed_metadata=False)[0]
    data = library.absolute(entry).read_bytes()
    assert b"secret" not in data and b"77" not in data.split(b"IDAT")[0] and b"dreamshaper" not in data
    assert entry.source == "none" and entry.prompt == ""
    assert library.query(Filter(text="secret")) == []


def test_an_inpaint_result_saved_in_the_library_carries_its_mask(library):
    """The app saves through the library: its inpaint results must carry the mask like the CLI's."""
    import dataclasses

    import numpy as np

    from engine.api import Mode
    from engine.images import mask_from_png

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 8, 48, 40))
    plain = make_result("a red balloon", seed=8)
    request = plain.request.replace(mode=Mode.INPAINT, init_image=Image.new("RGB", (64, 64), "teal"), mask=mask)
    entry = library.save(dataclasses.replace(plain, request=request))[0]
    stored = mask_from_png(library.absolute(entry))
    assert stored is not None and np.array_equal(np.asarray(stored), np.asarray(mask))
    assert read_metadata(library.absolute(entry)).fields["mode"] == "inpaint"
    assert mask_from_png(library.absolute(library.save(plain)[0])) is None  # txt2img: no mask chunk
    hidden = library.save(dataclasses.replace(plain, request=request), embed_metadata=False)[0]
    assert mask_from_png(library.absolute(hidden)) is None  # metadata off: nothing about the edit either


def test_trash_restore_and_empty(library):
    a, b = library.save(make_result("keep me", seed=1)) + library.save(make_result("bin me", seed=2))
    assert library.trash([b.id]) == [b.id]
    assert [e.prompt for e in library.query()] == ["keep me"]
    trashed = library.query(Filter(trash=True))[0]
    assert trashed.path.startswith(".trash/") and library.absolute(trashed).is_file()
    assert not library.absolute(b).exists()
    assert library.restore([b.id]) == [b.id]
    assert library.absolute(b).is_file() and library.index.count() == 2
    library.trash([a.id, b.id])
    assert library.empty_trash() == 2
    assert library.index.count(trash=True) == 0 and not list(library.trash_dir.rglob("*.png"))


def test_saving_never_overwrites_a_file_of_the_same_name(tmp_path):
    target = tmp_path / "same.png"
    Image.new("RGB", (8, 8), "red").save(target)
    written = write_png_atomic(target, Image.new("RGB", (8, 8), "blue"), overwrite=False)
    assert written.name == "same-2.png"
    assert Image.open(target).getpixel((0, 0)) == (255, 0, 0)


def test_thumbnails_are_cached_on_disk_and_unreadable_files_give_none(library):
    entry = library.save(make_result("thumb", seed=4, size=512))[0]
    source = library.absolute(entry)
    thumb = library.thumbnails.get(source, entry.path, entry.size_bytes, entry.mtime_ns)
    assert thumb is not None and thumb.is_relative_to(library.root / ".easel")
    with Image.open(thumb) as im:
        assert max(im.size) == 256
    mtime = thumb.stat().st_mtime_ns
    assert library.thumbnails.get(source, entry.path, entry.size_bytes, entry.mtime_ns) == thumb
    assert thumb.stat().st_mtime_ns == mtime  # not made again
    broken = library.root / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert library.thumbnails.get(broken, "broken.png", 10, 1) is None


def test_thumbnails_of_deleted_images_are_pruned_and_the_others_kept(library):
    kept, gone = library.save(make_result("kept", seed=1)) + library.save(make_result("gone", seed=2))
    thumbs = {e.path: library.thumbnails.get(library.absolute(e), e.path, e.size_bytes, e.mtime_ns) for e in (kept, gone)}
    assert all(t is not None and t.is_file() for t in thumbs.values())
    library.absolute(gone).unlink()  # deleted outside Easel
    report = library.reconcile()
    assert report.removed == [gone.id] and report.thumbnails_removed == 1
    assert thumbs[kept.path].is_file() and not thumbs[gone.path].exists()
    assert library.reconcile().thumbnails_removed == 0


def test_favourites_live_in_the_png_and_the_pixels_are_untouched(library):
    entry = library.save(make_result("star", seed=8))[0]
    path = library.absolute(entry)
    pixels = Image.open(path).tobytes()
    library.set_favourite([entry.id], True)
    assert read_metadata(path).raw.get("easel-favourite") == "1"
    assert Image.open(path).tobytes() == pixels
    assert library.reconcile().changed is False  # the row follows the rewrite
    library.set_favourite([entry.id], False)
    assert "easel-favourite" not in read_metadata(path).raw
    assert os.path.getsize(path) == entry.size_bytes


def test_an_image_with_a_text_chunk_past_pillows_limit_is_indexed_and_gets_a_thumbnail(library):
    info = PngInfo()
    info.add_text("comment", "x" * (20 * 1024 * 1024), zip=True)  # Pillow refuses to open this file
    info.add_text("parameters", "a huge-chunk prompt\nSteps: 4, Seed: 2, Size: 64x48")
    path = library.root / "huge chunk.png"
    Image.new("RGB", (64, 48), "green").save(path, pnginfo=info)
    library.reconcile()
    entry = library.query(Filter(text="huge"))[0]
    assert (entry.width, entry.height, entry.seed) == (64, 48, 2)
    thumb = library.thumbnails.get(path, entry.path, entry.size_bytes, entry.mtime_ns)
    assert thumb is not None and Image.open(thumb).getpixel((10, 10))[1] > 100

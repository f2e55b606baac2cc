"""A library: a folder of image files (the source of truth) with an index and thumbnails beside them.

Layout of the library folder (``<data>/outputs`` by default: what ``easel generate`` always used)::

    *.png, sub/folders/*.png   the images, named by date, seed and prompt (sanitised)
    .trash/<same path>         deleted images, until the trash is emptied (undo moves them back)
    .easel/index.sqlite        the index (a cache: ``rebuild`` recreates it from the files)
    .easel/thumbs/             thumbnail cache
    .easel/lock                held by the one process that owns the library

Saving writes each PNG through a temp file in the same folder (fsync, rename, fsync the folder),
then inserts its index row in one transaction. A crash between the two leaves a complete file
without a row, which the reconciler indexes on the next start.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from engine import __version__
from engine.api import EaselError, Result
from engine.files.safe import read_bytes
from engine.images import MAX_IMAGE_FILE_BYTES
from engine.library import reconcile as _reconcile
from engine.library.index import Filter, Index, IndexReader, unavailable
from engine.library.lock import LibraryLock
from engine.library.pngtext import set_png_text
from engine.library.records import FAVOURITE_KEY, LibraryEntry, entry_from_file, is_library_image
from engine.library.thumbnails import ThumbnailCache
from engine.outputs import fsync_folder, result_filename, safe_stem, write_bytes_atomic, write_png_atomic

log = logging.getLogger(__name__)

META_DIR, TRASH_DIR = ".easel", ".trash"


class SaveFailed(EaselError):
    """Some images of a result could not be written (disk full, no permission...).

    ``saved`` are the entries written before the failure; ``unsaved`` the indexes of the result's
    images that are not on disk (still in memory: offer "save elsewhere"). No partial file and no
    row is left for them.
    """

    def __init__(self, message: str, saved: list[LibraryEntry], unsaved: list[int], errno: int | None):
        super().__init__(message)
        self.saved = saved
        self.unsaved = unsaved
        self.errno = errno


@dataclass
class ImportReport:
    added: list[LibraryEntry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


class Library:
    """One library folder. ``exclusive=True`` takes the lock (raises LibraryLocked if another process
    holds it) and may write; ``exclusive=False`` only reads the index (``easel gallery list`` while the
    app runs). Methods may be called from any thread, but are meant for one worker thread at a time;
    the GUI reads through ``reader()``.
    """

    def __init__(self, root: Path, *, exclusive: bool = True):
        self.root = Path(root)
        self.meta_dir = self.root / META_DIR
        self.trash_dir = self.root / TRASH_DIR
        self.lock = LibraryLock(self.meta_dir / "lock")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self.lock.acquire()
        except OSError as exc:  # a read-only or full disk, a file where the folder should be
            raise unavailable(exc, self.meta_dir / "index.sqlite") from None
        index_path = self.meta_dir / "index.sqlite"
        try:
            if exclusive or index_path.exists():
                self.index = Index(index_path, read_only=not exclusive)
            else:  # a reader before any owner made the index: an empty one
                self.index = Index(Path(":memory:"))
                self.index.read_only = True
        except OSError as exc:
            self.lock.release()
            raise unavailable(exc, index_path) from None
        except BaseException:
            self.lock.release()
            raise
        self.thumbnails = ThumbnailCache(self.meta_dir / "thumbs")

    @property
    def read_only(self) -> bool:
        return self.index.read_only

    @property
    def notice(self) -> str | None:
        return self.index.notice

    def close(self) -> None:
        self.index.close()
        self.lock.release()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reader(self) -> IndexReader:
        """A read-only index connection for the calling thread."""
        return IndexReader(self.index.path)

    def absolute(self, entry: LibraryEntry | str) -> Path:
        relative = entry.path if isinstance(entry, LibraryEntry) else entry
        return self.root.joinpath(*relative.split("/"))

    def query(self, flt: Filter = Filter(), limit: int | None = None) -> list[LibraryEntry]:
        ids = self.index.query(flt, limit)
        found = self.index.entries(ids)
        return [found[i] for i in ids if i in found]

    # -- saving and importing -----------------------------------------------------------------

    def save(self, result: Result, *, embed_metadata: bool = True) -> list[LibraryEntry]:
        """Write every image of ``result`` and index it. Raises SaveFailed (nothing partial left).

        Runs on the caller's thread (the engine thread, in the app: after generating).
        """
        from engine.metadata import png_info

        saved: list[LibraryEntry] = []
        for i, image in enumerate(result.images):
            target = self.root / result_filename(result, i)
            info = png_info(result, i, app_version=__version__, embed=embed_metadata)
            try:
                target = write_png_atomic(target, image, info, overwrite=False)
            except OSError as exc:
                unsaved = list(range(i, len(result.images)))
                what = f"image {i + 1} of {len(result.images)}" if len(result.images) > 1 else "the image"
                raise SaveFailed(f"could not save {what} in {self.root}: {exc.strerror or exc}", saved, unsaved,
                                 exc.errno) from exc
            saved.append(self._index_new_file(target))
        return saved

    def _index_new_file(self, path: Path) -> LibraryEntry:
        entry = entry_from_file(self.root, path)
        if entry is None:  # cannot happen for a file we just wrote; be safe
            raise EaselError(f"{path.name} was written but cannot be read back")
        if self.read_only:
            return entry
        try:
            return self.index.add([entry])[0]
        except Exception as exc:  # noqa: BLE001 - the file is safe; the reconciler indexes it later
            log.warning("indexing %s failed (%s); it will be indexed on the next start", path.name, exc)
            return entry

    def import_files(self, paths: Sequence[Path], on_progress: Callable[[int, int], None] | None = None) -> ImportReport:
        """Copy images (files, or every image in folders) into the library, keeping their bytes and
        metadata exactly, and index them. Files already inside the library are only indexed."""
        report = ImportReport()
        sources: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                sources += sorted(q for q in p.rglob("*") if q.is_file() and is_library_image(q.name))
            else:
                sources.append(p)
        for n, src in enumerate(sources, 1):
            if on_progress:
                on_progress(n, len(sources))
            if not src.is_file():
                report.skipped.append((str(src), "no such file"))
                continue
            if entry_from_file(src.parent, src) is None:
                report.skipped.append((str(src), "not an image Easel can read, or the file is damaged"))
                continue
            try:
                inside = src.resolve().relative_to(self.root.resolve())
            except ValueError:
                inside = None
            if inside is not None:
                target = self.root / inside
            else:
                try:
                    target = write_bytes_atomic(self.root / f"{safe_stem(src.stem)}{src.suffix.lower()}",
                                                read_bytes(src, MAX_IMAGE_FILE_BYTES), overwrite=False)
                    os.utime(target, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns))
                except OSError as exc:
                    report.skipped.append((str(src), f"could not copy: {exc.strerror or exc}"))
                    continue
            report.added.append(self._index_new_file(target))
        return report

    # -- keeping the index true to the files --------------------------------------------------

    def reconcile(self, on_batch: Callable[[list[LibraryEntry]], None] | None = None,
                  stale_after: float = _reconcile.STALE_TEMP_SECONDS) -> _reconcile.Report:
        """Index files added outside Easel, refresh changed ones, drop rows whose file is gone, and
        delete temp files of interrupted saves older than ``stale_after`` seconds."""
        return _reconcile.reconcile(self, on_batch=on_batch, stale_after=stale_after)

    def rebuild(self, on_batch: Callable[[list[LibraryEntry]], None] | None = None) -> _reconcile.Report:
        """Forget the index and read every image file again."""
        self.index.clear()
        return self.reconcile(on_batch)

    # -- favourites and the trash -------------------------------------------------------------

    def set_favourite(self, ids: Iterable[int], favourite: bool) -> list[int]:
        """Star or unstar; stored in each PNG (a text chunk) so a rebuild keeps it. Returns ids changed."""
        entries = self.index.entries(ids)
        stats: dict[int, tuple[int, int]] = {}
        for image_id, entry in entries.items():
            path = self.absolute(entry)
            if path.suffix.lower() == ".png":
                set_png_text(path, FAVOURITE_KEY, "1" if favourite else None)
            st = path.stat()
            stats[image_id] = (st.st_size, st.st_mtime_ns)
        self.index.set_favourite(list(stats), favourite, stats)
        return list(stats)

    def trash(self, ids: Iterable[int]) -> list[int]:
        """Move images to the trash (``.trash/`` in the library). Returns the ids moved."""
        now = time.time()
        moves: dict[int, tuple[str, float | None]] = {}
        for image_id, entry in self.index.entries(ids).items():
            if entry.trashed_at is not None:
                continue
            src = self.absolute(entry)
            dest = _unique(self.trash_dir.joinpath(*entry.path.split("/")))
            if self._move(src, dest):
                moves[image_id] = (dest.relative_to(self.root).as_posix(), now)
        self.index.move(moves)
        return list(moves)

    def restore(self, ids: Iterable[int]) -> list[int]:
        """Move images back from the trash to where they were (undo of ``trash``)."""
        moves: dict[int, tuple[str, float | None]] = {}
        for image_id, entry in self.index.entries(ids).items():
            if entry.trashed_at is None or not entry.path.startswith(TRASH_DIR + "/"):
                continue
            src = self.absolute(entry)
            dest = _unique(self.absolute(entry.path[len(TRASH_DIR) + 1:]))
            if self._move(src, dest):
                moves[image_id] = (dest.relative_to(self.root).as_posix(), None)
        self.index.move(moves)
        return list(moves)

    def empty_trash(self) -> int:
        """Delete the trashed files for good. Returns how many."""
        ids = self.index.query(Filter(trash=True))
        removed = []
        for image_id, entry in self.index.entries(ids).items():
            try:
                self.absolute(entry).unlink(missing_ok=True)
                removed.append(image_id)
            except OSError as exc:
                log.warning("could not delete %s: %s", entry.path, exc)
        self.index.remove(removed)
        return len(removed)

    def _move(self, src: Path, dest: Path) -> bool:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            fsync_folder(dest.parent)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise EaselError(f"could not move {src.name}: {exc.strerror or exc}") from None


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    for n in range(2, 100_000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise EaselError(f"too many files named like {path.name} in {path.parent}")


def copy_out(src: Path, dest: Path) -> Path:
    """Export: copy a library image (bytes and metadata unchanged) to ``dest``, atomically."""
    try:
        return write_bytes_atomic(Path(dest), Path(src).read_bytes())
    except OSError as exc:
        raise EaselError(f"could not export to {dest}: {exc.strerror or exc}") from None



"""The gallery: owns the library (files + index), the grid's model, search, favourites, trash and undo.

Every library write, search and reconcile runs on the bridge's library thread; thumbnails on its
thumbnail thread; the GUI thread only reads pages of rows through its own read-only connection.
The library folder is watched: files added or deleted by hand, or saved by ``easel generate``
while the app runs, show up after a short pause.
"""

from __future__ import annotations

import array
import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QFileSystemWatcher, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QImage

from desktop_app.bridge import EngineBridge, Outcome
from desktop_app.state.errors import ErrorReporter
from desktop_app.state.tasks import BackgroundTasks
from desktop_app.state.gallery_model import GalleryModel, UnsavedImage
from engine.api import EaselError, Result
from engine.library import Filter, Library, LibraryEntry, SaveFailed

log = logging.getLogger(__name__)

RECONCILE_DELAY_MS = 400
THUMB_DISPLAY = 160  # thumbnails are kept in memory at this size (the grid cell)


@dataclass(frozen=True)
class OpenedImage:
    """An image from outside the library (dropped on the window or opened), with its metadata."""

    path: Path
    meta: Any  # engine.metadata.ImageMetadata


@dataclass(frozen=True)
class Saved:
    """One saved image, as the saver hands it back across threads."""

    entry: LibraryEntry
    absolute_path: Path


class GalleryState(QObject):
    filter_changed = Signal(object)  # Filter
    current_changed = Signal(object)  # LibraryEntry | UnsavedImage | OpenedImage | None
    undo_changed = Signal(bool)
    facets_changed = Signal(list, list)  # model names, sizes: for the filter lists
    searched = Signal(int)  # a search finished with this many results
    details_loaded = Signal(object, object)  # item, ImageMetadata: everything its file says
    image_loaded = Signal(object, QImage)  # item, the full image (for the image view)
    reconciled = Signal(object)  # engine.library.reconcile.Report

    def __init__(self, root: Path, bridge: EngineBridge, reporter: ErrorReporter, *, embed_metadata=lambda: True,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.library = Library(root)  # raises LibraryLocked: the app says so and exits
        self.root = self.library.root
        self._bridge = bridge
        self._reporter = reporter
        self._embed_metadata = embed_metadata
        self._reader = self.library.reader()
        self.model = GalleryModel(lambda: self._reader, self._request_thumbnail, self)
        self.model.root = self.root
        self.filter = Filter()
        self._search_seq = 0
        # The unfiltered list (the view the artist comes back to after every search), kept with the
        # index's data_version it was read at: clearing a search shows it at once, with no query.
        self._all_ids: tuple[int, array.array] | None = None
        self._undo: list[list[int]] = []
        self._trash_notice = ""  # the banner's "moved to the trash" line, withdrawn by undo
        self._tasks = BackgroundTasks(reporter, "The gallery hit a problem")
        self._spawn = self._tasks.spawn
        self._recent_images: dict[int, QImage] = {}  # just generated: shown without reading the file
        self.current: LibraryEntry | UnsavedImage | OpenedImage | None = None
        self._closed = False
        self._reconcile_timer = QTimer(self)
        self._reconcile_timer.setSingleShot(True)
        self._reconcile_timer.setInterval(RECONCILE_DELAY_MS)
        self._reconcile_timer.timeout.connect(self.reconcile)
        self._watcher = QFileSystemWatcher([str(self.root)], self)
        self._watcher.directoryChanged.connect(self._on_watcher_directory_changed)
        if self.library.notice:
            reporter.notice(self.library.notice)

    # -- lifecycle (GUI thread) ---------------------------------------------------------------

    def start(self) -> None:
        """Show what the index holds now (first paint), then reconcile with the files."""
        version = self._reader.data_version()
        ids = self._reader.query(self.filter)
        self._remember_all(self.filter, version, ids)
        self.model.set_ids(ids)
        self._emit_facets()
        self.reconcile()

    def stop(self) -> None:
        """Stop the watcher and pending work (before the bridge joins its threads)."""
        self._closed = True
        self._reconcile_timer.stop()
        self._watcher.directoryChanged.disconnect(self._on_watcher_directory_changed)
        self._tasks.cancel_all()

    def close(self) -> None:
        """After the bridge's library thread has stopped: release the index and the lock."""
        self._reader.close()
        self.library.close()


    # -- saving (engine thread) ---------------------------------------------------------------

    def saver(self, result: Result, _folder: Path) -> list[Saved]:
        """Engine thread: write the result's images into the library and index them."""
        try:
            entries = self.library.save(result, embed_metadata=self._embed_metadata())
        except SaveFailed as exc:
            exc.saved = [Saved(e, self.library.absolute(e)) for e in exc.saved]
            raise
        return [Saved(e, self.library.absolute(e)) for e in entries]

    def save_upscaled(self, result, source_texts: dict[str, str], _folder: Path) -> Saved:
        """Engine thread: write an upscaled image into the library (keeping the source's settings) and
        index it. An error leaves no file behind (the write is atomic)."""
        from desktop_app.upscale_work import default_upscale_saver

        path = default_upscale_saver(result, source_texts, self.root, embed=self._embed_metadata())
        report = self.library.import_files([path])  # already inside the library: only indexed
        if not report.added:
            raise EaselError(f"{path.name} was written but cannot be read back")
        return Saved(report.added[0], path)

    def on_upscaled(self, saved: Saved, image: QImage, *, show: bool = True) -> None:
        """An upscaled image joins the top of the grid (and, ``show``, becomes current). GUI thread."""
        self._recent_images[saved.entry.id] = image
        while len(self._recent_images) > 16:
            self._recent_images.pop(next(iter(self._recent_images)))
        if self.filter == Filter():
            self.model.insert_top([saved.entry])
        else:
            self.search()
        self._emit_facets()
        if show:
            self.set_current(saved.entry)

    def on_job_finished(self, outcome: Outcome, *, show: bool = True) -> None:
        """New results go on top of the grid and (``show``) become current; unsaved ones are kept in
        memory. A canvas edit's results pass ``show=False``: they are shown over the canvas."""
        result = outcome.result
        entries = [s.entry for s in outcome.saved if isinstance(s, Saved)]
        for s, image in zip(outcome.saved, (i for n, i in enumerate(outcome.images) if n not in outcome.unsaved)):
            if isinstance(s, Saved):
                self._recent_images[s.entry.id] = image
        while len(self._recent_images) > 16:
            self._recent_images.pop(next(iter(self._recent_images)))
        newest_first = sorted(entries, key=lambda e: (e.created, e.path), reverse=True)
        if outcome.save_error:
            unsaved = [UnsavedImage(outcome.images[i], result, i, outcome.save_error) for i in outcome.unsaved]
            self.model.add_unsaved(unsaved)
            self._reporter.report(
                f"Could not save {len(unsaved)} image(s): {outcome.save_error}. They are kept at the top of the "
                "gallery until you save them elsewhere (right-click › Save as…).")
        if newest_first:
            if self.filter == Filter():
                self.model.insert_top(newest_first)
            else:
                self.search()
            self._emit_facets()
        shown = newest_first[-1] if newest_first else (self.model.unsaved[0] if outcome.save_error else None)
        if shown is not None and show:
            self.set_current(shown)

    def recent_image(self, image_id: int) -> QImage | None:
        return self._recent_images.get(image_id)

    # -- search -------------------------------------------------------------------------------

    def set_filter(self, **changes: Any) -> None:
        """Change the search (text=..., favourites=..., model=..., size=..., since=..., trash=...)."""
        import dataclasses

        new = dataclasses.replace(self.filter, **changes)
        if new != self.filter:
            self.filter = new
            self.filter_changed.emit(new)
            self.search()

    def search(self) -> asyncio.Task[None] | None:
        self._search_seq += 1
        if self.filter == Filter() and self._all_ids is not None and self._all_ids[0] == self._reader.data_version():
            # Cleared: the unfiltered list is known and nothing was written since it was read.
            ids = self._all_ids[1]
            self.model.set_ids(ids)
            self._drop_current_if_filtered_out()
            self.searched.emit(len(ids))
            return None
        return self._spawn(self._search(self._search_seq, self.filter))

    async def _search(self, seq: int, flt: Filter) -> None:
        version = self._reader.data_version()  # before the query: a write after it makes the copy stale
        ids = await self._bridge.run_library(self.library.index.query, flt)
        self._remember_all(flt, version, ids)
        if seq == self._search_seq and not self._closed:  # a newer search supersedes this one
            self.model.set_ids(ids)
            self._drop_current_if_filtered_out()
            self.searched.emit(len(ids))
        if flt != Filter() and not self._closed and (self._all_ids is None or self._all_ids[0] != version):
            # Keep the unfiltered list fresh while the artist looks at a search, for when it is cleared.
            version = self._reader.data_version()
            all_ids = await self._bridge.run_library(self.library.index.query, Filter())
            self._remember_all(Filter(), version, all_ids)

    def _drop_current_if_filtered_out(self) -> None:
        """A search that hides the library image being shown also clears the viewer and its details."""
        if isinstance(self.current, LibraryEntry) and self.model.row_of(self.current.id) < 0:
            self.set_current(None)

    def _remember_all(self, flt: Filter, version: int, ids: list[int]) -> None:
        if flt == Filter():
            self._all_ids = (version, array.array("q", ids))  # 8 bytes an image, not a list of ints

    def _emit_facets(self) -> None:
        self.facets_changed.emit(self._reader.model_names(), self._reader.sizes())

    # -- outside edits ------------------------------------------------------------------------

    def _on_watcher_directory_changed(self, _path: str) -> None:
        self._reconcile_timer.start()

    def reconcile(self) -> asyncio.Task[None]:
        return self._spawn(self._reconcile())

    async def _reconcile(self) -> None:
        report = await self._bridge.run_library(self.library.reconcile)
        if self._closed:
            return
        if report.changed:
            before = self.model.ids
            after = await self._bridge.run_library(self.library.index.query, self.filter)
            self._apply_new_ids(before, after)
            self._emit_facets()
        self.reconciled.emit(report)

    def _apply_new_ids(self, before: list[int], after: list[int]) -> None:
        self.model.forget_entries()
        kept = set(after)
        removed = [i for i in before if i not in kept]
        if removed:
            self.model.remove_ids(removed)
        old = set(before)
        added = [i for i in after if i not in old]
        if not added:
            return
        if after[:len(added)] == added and after[len(added):] == [i for i in before if i in kept]:
            entries = self._reader.entries(added)
            self.model.insert_top([entries[i] for i in added if i in entries])
        else:
            self.model.set_ids(after)

    # -- current image ------------------------------------------------------------------------

    def set_current(self, item: LibraryEntry | UnsavedImage | OpenedImage | None) -> None:
        if item is not self.current:
            self.current = item
            self.current_changed.emit(item)

    def select_relative(self, delta: int) -> None:
        rows = self.model.rowCount()
        if not rows:
            return
        row = self._row_of_current()
        row = max(0, min(rows - 1, (row if row >= 0 else -1) + delta))
        self.set_current(self.model.data(self.model.index(row), GalleryModel.EntryRole))

    def _row_of_current(self) -> int:
        if isinstance(self.current, LibraryEntry):
            return self.model.row_of(self.current.id)
        if isinstance(self.current, UnsavedImage) and self.current in self.model.unsaved:
            return self.model.unsaved.index(self.current)
        return -1

    def absolute(self, entry: LibraryEntry) -> Path:
        return self.library.absolute(entry)

    def request_image(self, item: LibraryEntry | OpenedImage) -> None:
        """Load the item's full image off the GUI thread; ``image_loaded`` delivers it."""
        self._spawn(self._load_and_emit(item))

    async def _load_and_emit(self, item: LibraryEntry | OpenedImage) -> None:
        image = await self.load_image(item)
        if image is not None and not self._closed:
            self.image_loaded.emit(item, image)
        elif image is None and not self._closed and item is self.current:
            self._reporter.notice(f"{getattr(item, 'name', None) or item.path.name} cannot be shown: the file is missing or damaged.")

    async def load_image(self, item: LibraryEntry | OpenedImage) -> QImage | None:
        """The full image for the image view, read on the I/O thread (None if unreadable)."""
        if isinstance(item, OpenedImage):
            path = item.path
        else:
            recent = self._recent_images.get(item.id)
            if recent is not None:
                return recent
            path = self.library.absolute(item)
        image = await self._bridge.run_io(_read_qimage, path)
        return None if image.isNull() else image

    def request_details(self, item: LibraryEntry | OpenedImage) -> None:
        """Read the item's full metadata on the I/O thread; ``details_loaded`` delivers it."""
        if isinstance(item, OpenedImage):
            self.details_loaded.emit(item, item.meta)
            return
        self._spawn(self._details(item))

    async def _details(self, entry: LibraryEntry) -> None:
        from engine.metadata import read_metadata

        meta = await self._bridge.run_io(read_metadata, self.library.absolute(entry))
        if not self._closed:
            self.details_loaded.emit(entry, meta)

    def _request_thumbnail(self, entry: LibraryEntry) -> None:
        key = (entry.id, entry.mtime_ns)
        cache, source = self.library.thumbnails, self.library.absolute(entry)
        dropped = self._bridge.thumbnails.request(
            key, lambda: _thumbnail(cache, source, entry), self.model.thumbnail_ready)
        if dropped:
            self.model.thumbnails_dropped(dropped)

    # -- favourites, trash, import ------------------------------------------------------------

    def set_favourite(self, entries: list[LibraryEntry], favourite: bool) -> asyncio.Task[None]:
        return self._spawn(self._set_favourite([e.id for e in entries], favourite))

    async def _set_favourite(self, ids: list[int], favourite: bool) -> None:
        changed = await self._bridge.run_library(self.library.set_favourite, ids, favourite)
        fresh = self._reader.entries(changed)
        self.model.update_entries(list(fresh.values()))
        if isinstance(self.current, LibraryEntry) and self.current.id in fresh:
            self.current = fresh[self.current.id]
            self.current_changed.emit(self.current)
        if self.filter.favourites and not favourite:
            self.model.remove_ids(changed)

    def trash(self, entries: list[LibraryEntry]) -> asyncio.Task[None]:
        """Move to the trash; undo brings them back (Ctrl+Z)."""
        return self._spawn(self._trash([e.id for e in entries]))

    async def _trash(self, ids: list[int]) -> None:
        moved = await self._bridge.run_library(self.library.trash, ids)
        if not moved:
            return
        gone = set(moved)
        current_gone = isinstance(self.current, LibraryEntry) and self.current.id in gone
        # The image after the deleted ones takes their place (the one before, at the end), as in a
        # file manager: it is shown and selected, so a second Delete deletes it.
        rows = [self.model.row_of(i) for i in moved]
        first_row = min((r for r in rows if r >= 0), default=-1)
        self.model.remove_ids(moved)
        self._undo.append(moved)
        self.undo_changed.emit(True)
        if current_gone:
            count = self.model.rowCount()
            nxt = self.model.data(self.model.index(min(first_row, count - 1)), GalleryModel.EntryRole) \
                if count and first_row >= 0 else None
            self.current = None  # so that the next one is announced even if Qt already moved to it
            self.set_current(nxt)
        self._trash_notice = f"{len(moved)} image(s) moved to the trash. Press Ctrl+Z in the gallery to undo."
        self._reporter.notice(self._trash_notice)

    def trash_files(self, paths: list[str]) -> asyncio.Task[None]:
        """Move the library images saved at ``paths`` (absolute) to the trash, as ``trash`` does."""
        return self._spawn(self._trash_files([Path(p) for p in paths]))

    async def _trash_files(self, paths: list[Path]) -> None:
        def ids() -> list[int]:  # library thread
            found = []
            for path in paths:
                try:
                    relative = path.resolve().relative_to(self.root.resolve()).as_posix()
                except ValueError:
                    continue  # not in the library (saved elsewhere)
                entry = self.library.index.by_path(relative)
                if entry is not None:
                    found.append(entry.id)
            return found

        found = await self._bridge.run_library(ids)
        if found:
            await self._trash(found)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo_trash(self) -> asyncio.Task[None] | None:
        if not self._undo:
            return None
        return self._spawn(self._undo_trash(self._undo.pop()))

    async def _undo_trash(self, ids: list[int]) -> None:
        self.undo_changed.emit(bool(self._undo))
        await self._bridge.run_library(self.library.restore, ids)
        if self._trash_notice:
            self._reporter.withdraw(self._trash_notice)
            self._trash_notice = ""
        await self._search(self._next_seq(), self.filter)

    def _next_seq(self) -> int:
        self._search_seq += 1
        return self._search_seq

    def restore_from_trash(self, entries: list[LibraryEntry]) -> asyncio.Task[None]:
        return self._spawn(self._undo_trash([e.id for e in entries]))

    def empty_trash(self) -> asyncio.Task[None]:
        return self._spawn(self._empty_trash())

    async def _empty_trash(self) -> None:
        count = await self._bridge.run_library(self.library.empty_trash)
        self._undo.clear()
        self.undo_changed.emit(False)
        await self._search(self._next_seq(), self.filter)
        self._reporter.notice(f"The trash was emptied ({count} image(s) deleted).")

    def import_files(self, paths: list[Path]) -> asyncio.Task[None]:
        return self._spawn(self._import(paths))

    async def _import(self, paths: list[Path]) -> None:
        report = await self._bridge.run_library(self.library.import_files, paths)
        await self._search(self._next_seq(), self.filter)
        self._emit_facets()
        skipped = f"; {len(report.skipped)} skipped ({report.skipped[0][1]})" if report.skipped else ""
        self._reporter.notice(f"{len(report.added)} image(s) imported into the gallery{skipped}.")

    def save_unsaved(self, item: UnsavedImage, target: Path) -> asyncio.Task[None]:
        return self._spawn(self._save_unsaved(item, target))

    async def _save_unsaved(self, item: UnsavedImage, target: Path) -> None:
        from engine.outputs import save_image

        path = await self._bridge.run_io(save_image, item.result, item.index, target)
        self.model.remove_unsaved(item)
        if self.current is item:
            self.set_current(None)
        self._reporter.notice(f"Saved {path}.")

    def export(self, entries: list[LibraryEntry], folder: Path) -> asyncio.Task[None]:
        return self._spawn(self._export(entries, folder))

    async def _export(self, entries: list[LibraryEntry], folder: Path) -> None:
        from engine.library import copy_out

        def run() -> int:
            for e in entries:
                copy_out(self.library.absolute(e), folder / e.name)
            return len(entries)

        count = await self._bridge.run_io(run)
        self._reporter.notice(f"Exported {count} image(s) to {folder}.")


def _read_qimage(path: Path) -> QImage:
    """I/O thread: decode an image file into a QImage (null if unreadable)."""
    return QImage(str(path))


def _thumbnail(cache, source: Path, entry: LibraryEntry) -> QImage | None:
    """Thumbnail thread: make or read the thumbnail file, then decode it."""
    path = cache.get(source, entry.path, entry.size_bytes, entry.mtime_ns)
    if path is None:
        return None
    image = QImage(str(path))
    if image.isNull():
        return None
    if max(image.width(), image.height()) > THUMB_DISPLAY:
        image = image.scaled(THUMB_DISPLAY, THUMB_DISPLAY, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    return image


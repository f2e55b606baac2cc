"""The gallery library: image files as the source of truth, an SQLite index, thumbnails, a lock.

Qt-free: used by the desktop app (on its worker threads) and by ``easel gallery ...``.
"""

from engine.library.index import Filter, IndexReader, IndexUnavailable
from engine.library.lock import LibraryLock, LibraryLocked
from engine.library.records import LibraryEntry, entry_from_file
from engine.library.store import ImportReport, Library, SaveFailed, copy_out

__all__ = [
    "Filter", "ImportReport", "IndexReader", "IndexUnavailable", "Library", "LibraryEntry", "LibraryLock",
    "LibraryLocked", "SaveFailed", "copy_out", "entry_from_file",
]

"""The SQLite index of a library: a cache of the image files' metadata, rebuildable from them.

WAL mode: one writer (``Index``, owned by whoever owns the library) and any number of readers
(``IndexReader``, one per thread) that never wait for a write in progress. Opening handles:
a new file (created), an older schema (backed up, then migrated forward), a newer schema (opened
read-only: ``read_only`` and ``notice`` say so), and a damaged file (moved aside and recreated
empty, ``notice`` says so; the reconciler then refills it from the files).

Only real damage (sqlite's "not a database", "malformed", a failed quick check) moves a file aside.
A full disk, a read-only folder or a lock held elsewhere is an ``OperationalError`` that says nothing
about the file: the index stays where it is and ``IndexUnavailable`` says what is wrong
(``engine.files.space`` tells a full disk from the rest).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

from engine.api import EaselError
from engine.library import schema
from engine.library.records import LibraryEntry

log = logging.getLogger(__name__)

_COLUMNS = tuple(f.name for f in fields(LibraryEntry))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM images"
_INSERT_COLUMNS = tuple(c for c in _COLUMNS if c != "id")


class IndexUnavailable(EaselError):
    """The index cannot be opened or written (the image files are not affected)."""


def unavailable(exc: BaseException, path: Path) -> IndexUnavailable:
    """The one line for an index that cannot be opened or written because of its disk or folder."""
    from engine.files.space import describe_os_error, is_disk_full

    if is_disk_full(exc, path.parent):
        return IndexUnavailable(f"the disk is full, so the gallery index cannot be written ({path.parent}); "
                                "free some space and try again")
    if isinstance(exc, OSError) and describe_os_error(exc, path):
        return IndexUnavailable(f"the gallery cannot be used: {describe_os_error(exc, path)}")
    text = str(exc)
    if "readonly" in text.lower() or "read-only" in text.lower():
        return IndexUnavailable(f"the gallery folder {path.parent.parent} is read-only, so its index cannot be written")
    if "unable to open" in text:
        return IndexUnavailable(f"the gallery index {path} cannot be opened (check the folder's permissions)")
    return IndexUnavailable(f"the gallery index {path.name} cannot be used: {text}")


@dataclass(frozen=True)
class Filter:
    """What the gallery shows. Empty fields do not filter.

    text: words matched (as prefixes) in the prompt or negative prompt; ``"a phrase"`` in quotes;
        ``-word`` excludes; a number of 3+ digits also matches that seed.
    model: the model name, case-insensitive. size: (width, height).
    since / until: seconds since the epoch (made at or after / before).
    trash: show the trash instead of the gallery.
    """

    text: str = ""
    model: str = ""
    favourites: bool = False
    size: tuple[int, int] | None = None
    since: float | None = None
    until: float | None = None
    trash: bool = False


def _entry(row: Sequence) -> LibraryEntry:
    values = dict(zip(_COLUMNS, row))
    values["favourite"] = bool(values["favourite"])
    for key in ("prompt", "negative_prompt", "model_name", "model_hash", "sampler", "mode"):
        values[key] = values[key] or ""
    return LibraryEntry(**values)


def _fts_query(text: str) -> tuple[str, list[int]]:
    """(an FTS5 MATCH expression, seeds) from what the user typed. Never a syntax error."""
    include: list[str] = []
    exclude: list[str] = []
    seeds: list[int] = []
    for match in re.finditer(r'(-?)"([^"]*)"?|(-?)(\S+)', text):
        negative = bool(match.group(1) or match.group(3))
        phrase = match.group(2) if match.group(2) is not None else match.group(4)
        words = re.findall(r"\w+", phrase)
        if not words:
            continue
        term = '"' + " ".join(words) + '"'
        if match.group(2) is None:
            term += "*"  # a bare word matches as a prefix: "cast" finds "castle"
        (exclude if negative else include).append(term)
        if not negative and match.group(2) is None and len(words) == 1 and words[0].isdigit() and len(words[0]) >= 3:
            seeds.append(int(words[0]))
    if not include and exclude:
        return "NOT " + " OR ".join(exclude), seeds  # the caller turns a leading NOT into NOT IN
    expression = " AND ".join(include)
    for term in exclude:
        expression += f" NOT {term}"
    return expression, seeds


class _Reading:
    """Queries shared by the writer and the readers. Subclasses set ``_con``, ``_lock`` and ``fts``."""

    _con: sqlite3.Connection
    _lock: threading.RLock
    fts: bool

    def query(self, flt: Filter = Filter(), limit: int | None = None) -> list[int]:
        """Ids of the matching images, newest first."""
        where, args = ["trashed_at IS NOT NULL" if flt.trash else "trashed_at IS NULL"], []
        text = flt.text.strip()
        if text:
            expression, seeds = _fts_query(text) if self.fts else ("", [])
            if self.fts and expression:
                negated = expression.startswith("NOT ")
                clause = f"id {'NOT ' if negated else ''}IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)"
                args.append(expression[4:] if negated else expression)
                if seeds:
                    clause = f"({clause} OR seed IN ({', '.join('?' * len(seeds))}))"
                    args += seeds
                where.append(clause)
            elif not self.fts:
                for word in text.split():
                    where.append("(prompt LIKE ? ESCAPE '\\' OR negative_prompt LIKE ? ESCAPE '\\')")
                    pattern = "%" + re.sub(r"([%_\\])", r"\\\1", word) + "%"
                    args += [pattern, pattern]
        if flt.model:
            where.append("model_name = ? COLLATE NOCASE")
            args.append(flt.model)
        if flt.favourites:
            where.append("favourite = 1")
        if flt.size:
            where.append("width = ? AND height = ?")
            args += list(flt.size)
        if flt.since is not None:
            where.append("created >= ?")
            args.append(flt.since)
        if flt.until is not None:
            where.append("created < ?")
            args.append(flt.until)
        order = "trashed_at DESC, id DESC" if flt.trash else "created DESC, path DESC"
        sql = f"SELECT id FROM images WHERE {' AND '.join(where)} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return [row[0] for row in self._con.execute(sql, args)]

    def entries(self, ids: Iterable[int]) -> dict[int, LibraryEntry]:
        """The entries for ``ids`` (missing ids are left out), by id."""
        ids = list(ids)
        out: dict[int, LibraryEntry] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                sql = f"{_SELECT} WHERE id IN ({', '.join('?' * len(chunk))})"
                for row in self._con.execute(sql, chunk):
                    out[row[0]] = _entry(row)
        return out

    def entry(self, image_id: int) -> LibraryEntry | None:
        return self.entries([image_id]).get(image_id)

    def by_path(self, relative: str) -> LibraryEntry | None:
        with self._lock:
            row = self._con.execute(f"{_SELECT} WHERE path = ?", (relative,)).fetchone()
        return _entry(row) if row else None

    def files(self) -> dict[str, tuple[int, int, int, bool]]:
        """Every row's path -> (id, size, mtime_ns, trashed), for the reconciler."""
        with self._lock:
            rows = self._con.execute("SELECT path, id, size_bytes, mtime_ns, trashed_at IS NOT NULL FROM images")
            return {r[0]: (r[1], r[2], r[3], bool(r[4])) for r in rows}

    def count(self, trash: bool = False) -> int:
        with self._lock:
            return self._con.execute(
                f"SELECT COUNT(*) FROM images WHERE trashed_at IS {'NOT ' if trash else ''}NULL").fetchone()[0]

    def model_names(self) -> list[str]:
        """The models the gallery's images were made with, most used first (for a filter list)."""
        with self._lock:
            rows = self._con.execute(
                "SELECT model_name FROM images WHERE trashed_at IS NULL AND model_name != '' "
                "GROUP BY model_name COLLATE NOCASE ORDER BY COUNT(*) DESC, model_name")
            return [r[0] for r in rows]

    def sizes(self) -> list[tuple[int, int]]:
        with self._lock:
            rows = self._con.execute(
                "SELECT width, height FROM images WHERE trashed_at IS NULL AND width > 0 "
                "GROUP BY width, height ORDER BY COUNT(*) DESC")
            return [(r[0], r[1]) for r in rows]

    def integrity(self) -> str:
        """``PRAGMA integrity_check``: "ok" or the problems found."""
        with self._lock:
            return "; ".join(r[0] for r in self._con.execute("PRAGMA integrity_check"))


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    if read_only:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                              check_same_thread=False, timeout=5)
    else:
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    con.execute("PRAGMA busy_timeout = 5000")
    return con


class Index(_Reading):
    """The writer. Its methods may be called from any thread, one at a time (an internal lock)."""

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.notice: str | None = None  # one line for the user when opening needed attention
        self.migrated_from: int | None = None
        self.backup: Path | None = None
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except sqlite3.OperationalError as exc:  # the disk or the folder, not the file: never moved aside
            self._close_quietly()
            raise unavailable(exc, self.path) from None
        except sqlite3.DatabaseError as exc:
            if self.read_only:
                raise IndexUnavailable(f"the gallery index {self.path.name} cannot be read: {exc}") from None
            self._replace_damaged(exc)

    def _close_quietly(self) -> None:
        try:
            self._con.close()
        except Exception:  # noqa: BLE001 - never opened, or already gone
            pass

    # -- opening ------------------------------------------------------------------------------

    def _open(self) -> None:
        existed = self.path.exists() and self.path.stat().st_size > 0
        self._con = _connect(self.path, self.read_only)
        version = self._con.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and self._con.execute("SELECT 1 FROM sqlite_master WHERE name = 'images'").fetchone():
            version = 1  # a v1 index written before user_version was set
        if version > schema.SCHEMA_VERSION:
            if not self.read_only:
                self._con.close()
                self.read_only = True
                self._con = _connect(self.path, True)
            self.notice = ("The gallery index was made by a newer version of Easel, so this version shows it "
                           "read-only: new images are saved, but appear in the gallery after you update Easel.")
            log.warning("index %s has schema %d > %d: read-only", self.path, version, schema.SCHEMA_VERSION)
        elif not self.read_only:
            self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable up to the last checkpoint-safe commit
            if not existed or version == 0:
                with self.transaction():
                    schema.create(self._con)
            elif version < schema.SCHEMA_VERSION:
                self._migrate(version)
        self.fts = bool(self._con.execute("SELECT 1 FROM sqlite_master WHERE name = 'images_fts'").fetchone())
        if not self.read_only and self._con.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")

    def _migrate(self, version: int) -> None:
        self.backup = self._backup_copy(version)
        for step in range(version, schema.SCHEMA_VERSION):
            with self.transaction():
                schema.MIGRATIONS[step](self._con)
        self.migrated_from = version
        log.info("index %s migrated from schema %d to %d (backup %s)", self.path, version,
                 schema.SCHEMA_VERSION, self.backup)

    def _backup_copy(self, version: int) -> Path:
        target = self.path.with_name(f"{self.path.stem}.v{version}-backup-{time.strftime('%Y%m%d-%H%M%S')}.sqlite")
        copy = sqlite3.connect(target)
        try:
            self._con.backup(copy)
        finally:
            copy.close()
        return target

    def _replace_damaged(self, exc: Exception) -> None:
        try:
            self._con.close()
        except Exception:  # noqa: BLE001
            pass
        aside = self.path.with_name(f"{self.path.stem}.damaged-{time.strftime('%Y%m%d-%H%M%S')}.sqlite")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(str(aside) + suffix))
        log.warning("index %s is damaged (%s); moved to %s and rebuilt from the images", self.path, exc, aside)
        self.notice = f"The gallery index was damaged, so Easel rebuilt it from your images (the old one is {aside.name})."
        self._open()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def transaction(self):
        return _Transaction(self)

    # -- writing ------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise IndexUnavailable("the gallery index is read-only (made by a newer Easel)")

    def add(self, entries: Sequence[LibraryEntry]) -> list[LibraryEntry]:
        """Insert (or replace, by path) ``entries`` in one transaction; returns them with their ids."""
        self._check_writable()
        out = []
        sql = (f"INSERT INTO images ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(_INSERT_COLUMNS))}) "
               f"ON CONFLICT(path) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in _INSERT_COLUMNS if c != "path")
               )
        with self.transaction():
            for e in entries:
                values = [getattr(e, c) for c in _INSERT_COLUMNS]
                values[_INSERT_COLUMNS.index("favourite")] = int(e.favourite)
                self._con.execute(sql, values)
                new_id = self._con.execute("SELECT id FROM images WHERE path = ?", (e.path,)).fetchone()[0]
                out.append(e.with_id(new_id))
        return out

    def remove(self, ids: Iterable[int]) -> None:
        self._check_writable()
        with self.transaction():
            self._con.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])

    def set_favourite(self, ids: Iterable[int], favourite: bool, mtimes: dict[int, tuple[int, int]]) -> None:
        """Mark favourites; ``mtimes`` is id -> (size, mtime_ns) of each file after its rewrite."""
        self._check_writable()
        with self.transaction():
            for i in ids:
                size, mtime = mtimes[i]
                self._con.execute("UPDATE images SET favourite = ?, size_bytes = ?, mtime_ns = ? WHERE id = ?",
                                  (int(favourite), size, mtime, i))

    def move(self, moves: dict[int, tuple[str, float | None]]) -> None:
        """id -> (new relative path, trashed_at): files moved to or from the trash."""
        self._check_writable()
        with self.transaction():
            for i, (path, trashed_at) in moves.items():
                self._con.execute("UPDATE images SET path = ?, trashed_at = ? WHERE id = ?", (path, trashed_at, i))

    def clear(self) -> None:
        """Drop every row (a rebuild follows)."""
        self._check_writable()
        with self.transaction():
            self._con.execute("DELETE FROM images")

    def cached_model_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        with self._lock:
            row = self._con.execute("SELECT hash FROM model_hashes WHERE path = ? AND size_bytes = ? AND mtime_ns = ?",
                                    (path, size, mtime_ns)).fetchone()
        return row[0] if row else None

    def store_model_hash(self, path: str, size: int, mtime_ns: int, value: str) -> None:
        if self.read_only:
            return
        with self.transaction():
            self._con.execute("INSERT OR REPLACE INTO model_hashes VALUES (?, ?, ?, ?)", (path, size, mtime_ns, value))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), holding the index lock. Re-entrant."""

    def __init__(self, index: Index):
        self._index = index
        self._outer = False

    def __enter__(self) -> sqlite3.Connection:
        self._index._lock.acquire()
        con = self._index._con
        self._outer = not con.in_transaction
        if self._outer:
            con.execute("BEGIN IMMEDIATE")
        return con

    def __exit__(self, kind, exc, tb) -> None:
        con = self._index._con
        try:
            if self._outer:
                if kind is None:
                    con.execute("COMMIT")
                elif con.in_transaction:
                    con.execute("ROLLBACK")
        finally:
            self._index._lock.release()


class IndexReader(_Reading):
    """A read-only connection for one thread (the GUI's page fetches): never waits for the writer."""

    def __init__(self, path: Path):
        self._lock = threading.RLock()
        self._con = _connect(Path(path), True)
        self.fts = bool(self._con.execute("SELECT 1 FROM sqlite_master WHERE name = 'images_fts'").fetchone())

    def close(self) -> None:
        self._con.close()

    def data_version(self) -> int:
        """Changes whenever another connection (the writer) commits: a cheap "is my copy stale?" check."""
        with self._lock:
            return self._con.execute("PRAGMA data_version").fetchone()[0]

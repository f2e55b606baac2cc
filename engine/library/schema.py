"""The index's schema, by version, and the forward-only migrations between versions.

``PRAGMA user_version`` holds the version. A migration runs only after ``index.py`` has made a
backup copy of the file; there is no downgrade: an index newer than this Easel opens read-only.
Every column can be recomputed from the image files (see ``records.entry_from_file``), so a
migration may leave a column empty for the reconciler to refill from the file.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2

# Version 1 (Easel 0.1 development builds): path, prompt, negative prompt, seed, model, date.
# Kept so that tests can make a real v1 index and migrate it.
SCHEMA_V1 = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    prompt TEXT,
    negative_prompt TEXT,
    seed INTEGER,
    model TEXT,
    created REAL
);
PRAGMA user_version = 1;
"""

_IMAGES_V2 = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL DEFAULT 0,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    prompt TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '',
    model_name TEXT NOT NULL DEFAULT '',
    model_hash TEXT NOT NULL DEFAULT '',
    seed INTEGER,
    steps INTEGER,
    guidance_scale REAL,
    sampler TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'none',
    favourite INTEGER NOT NULL DEFAULT 0,
    trashed_at REAL
);
"""

_INDEXES_V2 = """
CREATE INDEX images_newest ON images (created DESC, path DESC);
CREATE INDEX images_model ON images (model_name COLLATE NOCASE);
CREATE TABLE model_hashes (
    path TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""

# Full-text search over both prompts, kept in step with ``images`` by triggers (external content).
_FTS_V2 = """
CREATE VIRTUAL TABLE images_fts USING fts5(
    prompt, negative_prompt, content='images', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2', prefix='2 3'
);
CREATE TRIGGER images_ai AFTER INSERT ON images BEGIN
    INSERT INTO images_fts(rowid, prompt, negative_prompt) VALUES (new.id, new.prompt, new.negative_prompt);
END;
CREATE TRIGGER images_ad AFTER DELETE ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
END;
CREATE TRIGGER images_au AFTER UPDATE OF prompt, negative_prompt ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
    INSERT INTO images_fts(rowid, prompt, negative_prompt) VALUES (new.id, new.prompt, new.negative_prompt);
END;
"""


def run_script(con: sqlite3.Connection, script: str) -> None:
    """Run ``script`` statement by statement inside the caller's transaction.

    (``executescript`` would COMMIT first, so a migration could be left half done by a crash.)
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            con.execute(statement)
            statement = ""
    if statement.strip():
        con.execute(statement)


def fts_available(con: sqlite3.Connection) -> bool:
    """Whether this SQLite has FTS5 (every Python build we ship does; the fallback is LIKE)."""
    try:
        con.execute("CREATE VIRTUAL TABLE temp.fts_probe USING fts5(x)")
        con.execute("DROP TABLE temp.fts_probe")
        return True
    except sqlite3.OperationalError:
        return False


def create(con: sqlite3.Connection) -> None:
    """A new, empty index at SCHEMA_VERSION (inside the caller's transaction)."""
    run_script(con, _IMAGES_V2 + _INDEXES_V2)
    if fts_available(con):
        run_script(con, _FTS_V2)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate_1_to_2(con: sqlite3.Connection) -> None:
    # Sizes, times and favourites were not kept in v1: left at 0 so that the reconciler sees every
    # row as changed and re-reads it from its file.
    con.execute("ALTER TABLE images RENAME TO images_v1")
    run_script(con, _IMAGES_V2)
    con.execute(
        "INSERT INTO images (id, path, created, prompt, negative_prompt, model_name, seed) "
        "SELECT id, path, COALESCE(created, 0), COALESCE(prompt, ''), COALESCE(negative_prompt, ''), "
        "COALESCE(model, ''), seed FROM images_v1"
    )
    con.execute("DROP TABLE images_v1")
    run_script(con, _INDEXES_V2)
    if fts_available(con):
        run_script(con, _FTS_V2)
        con.execute("INSERT INTO images_fts(images_fts) VALUES ('rebuild')")
    con.execute("PRAGMA user_version = 2")


MIGRATIONS = {1: _migrate_1_to_2}  # from version -> function bringing it to version + 1

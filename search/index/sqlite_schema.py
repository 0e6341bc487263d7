"""The embedded index's file: its tables, the checks made before trusting one, its error messages.

What the file holds:

* ``meta``: key/value pairs: schema version, vector dimension, index version (bumped by every
  committed transaction), and ``embedder``: the embedding model the vectors come from, once an
  embedder promotion or rollback has re-embedded the file (see ``search.index.sqlite_reembed``),
  and ``hash_model``: the model id the stored content hashes were computed with, recorded by the
  first re-embed (which keeps the hashes), so the indexer still finds unchanged documents
  unchanged after the switch (see ``SqliteIndex.hash_model_for``).
* ``documents``: one row per document, enough for the indexer to skip unchanged documents.
* ``chunks``: one row per chunk: the original text, the heading path (JSON) and the vector blob.
* ``chunks_fts``: FTS5 over title, headings and text, sharing rowids with ``chunks``. It holds a
  CJK-segmented copy of the text (bigrams, see ``search.text.segment_cjk``), so Chinese, Japanese
  and Korean are searchable; hits always show the original text from ``chunks``. A fourth column,
  ``source_key``, holds one opaque token per source, so a source filter is part of the MATCH
  expression and FTS5 applies it while merging doclists, instead of SQL joining every match to
  ``documents`` (which doubled filtered query time); its BM25 weight is 0, so it moves no score.

Everything here is synchronous: ``search.index.sqlite`` calls it on the index's own thread.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from search.errors import IndexStoreError

SCHEMA_VERSION = 1
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    path TEXT,
    url TEXT,
    modified REAL,
    content_hash TEXT NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_source ON documents (source);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    headings TEXT NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (
    title, headings, text, source_key, tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', {SCHEMA_VERSION}), ('version', 0);
"""


def source_key(source: str) -> str:
    """One FTS5 token naming a source exactly: letters then digits, which no stemmer touches."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"src{int.from_bytes(digest[:8], 'big')}"


def check_file(path: Path) -> None:
    """Refuse a directory, or a non-empty file that is not SQLite, before connecting to it."""
    if path.is_dir():
        raise IndexStoreError(f"index path {path} is a directory; point it at a file")
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
        if header != _SQLITE_HEADER:
            raise IndexStoreError(
                f"{path} is not a SQLite file, so not a lorebot index. Move it away "
                "(or delete it) and reindex, or point the index at another path."
            )


def create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables in a new file; check the schema version of an existing index."""
    tables = {
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    if tables and "meta" not in tables:
        raise IndexStoreError(
            f"{path} is a SQLite database but not a lorebot index; move it away or "
            "point the index at another path"
        )
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise IndexStoreError(
                f"index {path} has schema version {row and row[0]!r}, this lorebot "
                f"needs {SCHEMA_VERSION}; delete the file and reindex"
            )
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if "fts5" in str(exc).lower():
            raise IndexStoreError(
                "this Python's SQLite has no FTS5 module, which the embedded index needs; "
                "use a Python build whose sqlite3 includes FTS5"
            ) from exc
        raise


def version_and_dim(conn: sqlite3.Connection) -> tuple[int, int | None]:
    """The index version and the vector dimension (None before the first vector) in ``meta``."""
    values = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('version', 'dim')"))
    return int(values.get("version", 0)), values.get("dim")


def stored_embedder(conn: sqlite3.Connection) -> str | None:
    """The model ``meta.embedder`` names (the vectors' model), if a re-embed recorded one."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    return row[0] if row else None


def dimension_error(path: Path, got: int, stored: int) -> IndexStoreError:
    return IndexStoreError(
        f"index {path} holds {stored}-dimensional vectors but got {got} dimensions: it "
        "was built with another embedding model. Rebuild it: delete the file and reindex "
        "with the current model."
    )


def store_error(path: Path, exc: sqlite3.Error) -> IndexStoreError:
    """A sqlite3 error as an ``IndexStoreError`` that says what to do about it."""
    message = str(exc)
    lowered = message.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return IndexStoreError(
            f"{path} is not a readable lorebot index ({message}). Move the file away "
            "(or delete it) and reindex: the index is rebuilt from the knowledge sources."
        )
    if "disk is full" in lowered or "disk i/o" in lowered:
        return IndexStoreError(
            f"cannot write the index {path} ({message}): free some disk space"
        )
    if "unable to open" in lowered or "readonly" in lowered:
        return IndexStoreError(
            f"cannot open the index {path} ({message}): check that its directory "
            "exists and is writable"
        )
    return IndexStoreError(f"index {path}: {message}")

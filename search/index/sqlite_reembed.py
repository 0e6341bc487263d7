"""Re-embed an embedded (SQLite) index with another model, in one transaction readers never see half-done.

Promoting or rolling back the embedding model changes every vector in the index. The chunks,
their text and the BM25 index stay as they are; only the ``vector`` column changes, with
``meta.embedder`` (the model the vectors come from) and ``meta.version``, all in one write
transaction. Readers in WAL mode keep answering from the previous snapshot until it commits;
an open :class:`~search.index.sqlite.SqliteIndex` sees the new version and reloads its vector
matrix, and one whose own model differs from ``meta.embedder`` stops answering k-NN instead of
mixing models (see ``search.index.sqlite``).

Why not build a new file and ``os.replace`` it over the live one: in WAL mode the ``-wal`` and
``-shm`` files belong to the path, not to the inode, so a process still holding the old file
open and a process opening the new one would share a write-ahead log that belongs to another
database, the one way SQLite documents to corrupt a file. One transaction on the live file
needs no such care, and a reindex committed meanwhile is not lost.

Vectors already computed are reused: a *vector source* is another index file whose
``meta.embedder`` is the target model (the candidate index the promotion gate evaluated, or the
copy of the previous vectors kept for rollback); a chunk takes its vector when the source holds
the same chunk id with the same title, headings and text. Chunks no source covers are embedded
before the write transaction starts; the few that changed meanwhile are embedded inside it.

The stored content hashes are kept too, and they carry the model id they were computed with
(``search.indexer``): the first re-embed of a file records that id as ``meta.hash_model``, so
the next reindex with the new model finds unchanged documents unchanged instead of embedding
the whole corpus again (``SqliteIndex.hash_model_for``).

Everything here is synchronous and runs on the calling thread: call it through
``search.models_runtime.run_model`` (the encoder runs the model).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.errors import IndexStoreError
from search.models import Chunk, same_model

log = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised float32 rows
Progress = Callable[[int, int], None]

_ROWS = ("SELECT c.rowid, c.chunk_id, d.title, c.headings, c.text FROM main.chunks c "
         "JOIN main.documents d ON d.doc_id = c.doc_id")


@dataclass(frozen=True)
class ReembedSummary:
    chunks: int
    reused: int
    embedded: int
    seconds: float

    def as_dict(self) -> dict:
        return {"chunks": self.chunks, "reused": self.reused, "embedded": self.embedded,
                "seconds": round(self.seconds, 1)}


def stored_embedder(path: Path) -> str | None:
    """The model an index file's vectors come from, if a re-embed recorded it (else None)."""
    return read_meta(path).get("embedder")


def read_meta(path: Path) -> dict:
    try:
        with closing(_connect_ro(path)) as conn:
            return dict(conn.execute("SELECT key, value FROM meta"))
    except sqlite3.Error as exc:
        raise IndexStoreError(f"{path} is not a readable lorebot index ({exc})") from exc


def copy_index(src: Path, dst: Path, *, meta: dict[str, str] | None = None) -> None:
    """A consistent copy of ``src`` at ``dst`` (SQLite's online backup, as a reader of ``src``).

    ``meta`` entries are written into the copy (e.g. ``embedder``: whose vectors it holds,
    ``origin``: the file it was copied from).
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    with closing(_connect_ro(src)) as source, closing(sqlite3.connect(dst)) as target:
        source.backup(target)
        target.execute("PRAGMA journal_mode = WAL")
        with target:
            for key, value in (meta or {}).items():
                target.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               (key, value))


def reembed(
    path: Path,
    encode: Encode,
    model_id: str,
    *,
    reuse: Sequence[Path] = (),
    previous_model: str | None = None,
    batch_size: int = 256,
    busy_timeout_s: float = 120.0,
    progress: Progress | None = None,
) -> ReembedSummary:
    """Give every chunk of the index at ``path`` a vector of ``model_id``, in one transaction.

    ``reuse``: index files whose vectors are of ``model_id`` already (checked: a file whose
    ``meta.embedder`` is another model is skipped). ``previous_model``: the model that built
    the file, when it records none (``meta.embedder``): the content hashes were computed with
    it (see ``_record_hash_model``). ``progress(done, total)`` counts the chunks embedded
    before the write transaction.
    """
    started = time.perf_counter()
    sources = [p for p in reuse if _usable_source(p, model_id)]
    # URI names: read-only ATTACH of the sources, and paths with "?" or "#" in them.
    conn = sqlite3.connect(_uri(path), uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        for n, source in enumerate(sources):  # ATTACH is not allowed inside a transaction
            conn.execute(f"ATTACH DATABASE ? AS src{n}", (_uri(source, "ro"),))
        # 1. Outside the write lock: embed what no source covers (a reindex may run meanwhile).
        conn.execute("BEGIN")
        missing = {row[0]: row[1:] for row in conn.execute(_uncovered(len(sources)))}
        conn.execute("COMMIT")
        ahead = _embed(encode, missing, batch_size, progress)
        # 2. One write transaction: reuse, take what was embedded ahead if the chunk is still
        # the same, embed what changed meanwhile, and move the pin.
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise IndexStoreError(
                f"index {path} stayed locked by another writer for {busy_timeout_s:g} s (a "
                "reindex running?); try again when it is done"
            ) from exc
        try:
            _record_hash_model(conn, previous_model)
            summary = _switch(conn, encode, model_id, len(sources), ahead, batch_size)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise IndexStoreError(f"cannot re-embed the index {path}: {exc}") from exc
    finally:
        conn.close()
    reused, embedded, chunks = summary
    log.info("re-embedded %s with %s: %d chunks, %d reused, %d embedded",
             path, model_id, chunks, reused, embedded)
    return ReembedSummary(chunks, reused, embedded, time.perf_counter() - started)


def _switch(conn, encode, model_id, n_sources, ahead, batch_size) -> tuple[int, int, int]:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS new_vectors "
                 "(rowid INTEGER PRIMARY KEY, vector BLOB NOT NULL)")
    conn.execute("DELETE FROM temp.new_vectors")
    for n in range(n_sources):
        conn.execute(
            "INSERT OR IGNORE INTO temp.new_vectors (rowid, vector) "
            f"SELECT c.rowid, s.vector FROM main.chunks c {_match(n)}"
        )
    (reused,) = conn.execute("SELECT COUNT(*) FROM temp.new_vectors").fetchone()
    rest = {row[0]: row[1:] for row in conn.execute(
        f"{_ROWS} WHERE c.rowid NOT IN (SELECT rowid FROM temp.new_vectors)")}
    fresh = {r: v for r, v in ahead.items() if r in rest and v[0] == rest[r]}
    late = {r: key for r, key in rest.items() if r not in fresh}  # changed since step 1
    rows = {r: v for r, (_, v) in fresh.items()}
    rows.update({r: v for r, (_, v) in _embed(encode, late, batch_size, None).items()})
    conn.executemany("INSERT INTO temp.new_vectors (rowid, vector) VALUES (?, ?)",
                     ((r, v.tobytes()) for r, v in rows.items()))
    conn.execute("UPDATE main.chunks SET vector = (SELECT n.vector FROM temp.new_vectors n "
                 "WHERE n.rowid = chunks.rowid)")
    dims = {d for (d,) in conn.execute(
        "SELECT DISTINCT length(vector) / 4 FROM main.chunks")}
    if len(dims) > 1:  # a source of another dimension slipped through: never commit that
        raise IndexStoreError(f"re-embedding produced vectors of {len(dims)} dimensions")
    if dims:
        conn.execute("INSERT OR REPLACE INTO main.meta (key, value) VALUES ('dim', ?)",
                     (dims.pop(),))
    conn.execute("INSERT OR REPLACE INTO main.meta (key, value) VALUES ('embedder', ?)",
                 (model_id,))
    conn.execute("UPDATE main.meta SET value = value + 1 WHERE key = 'version'")
    conn.execute("DELETE FROM temp.new_vectors")
    (chunks,) = conn.execute("SELECT COUNT(*) FROM main.chunks").fetchone()
    return reused, len(rows), chunks


def _record_hash_model(conn, previous_model: str | None) -> None:
    """Record, once, the model id the file's stored content hashes were computed with.

    Later re-embeds keep it (they keep the hashes). Before the first one, the model of the
    vectors made the hashes: ``meta.embedder`` if the file names it, else the caller's
    ``previous_model``. A wrong guess costs only work, never a stale vector: hashes that do
    not match count as changed and are re-embedded.
    """
    meta = dict(conn.execute(
        "SELECT key, value FROM main.meta WHERE key IN ('embedder', 'hash_model')"))
    if "hash_model" in meta:
        return
    if made_with := meta.get("embedder") or previous_model:
        conn.execute("INSERT INTO main.meta (key, value) VALUES ('hash_model', ?)",
                     (made_with,))


def _match(n: int) -> str:
    """Joins a live chunk to the same chunk (same id, title, headings, text) in source ``n``."""
    return (f"JOIN main.documents d ON d.doc_id = c.doc_id "
            f"JOIN src{n}.chunks s ON s.chunk_id = c.chunk_id AND s.text = c.text "
            f"AND s.headings = c.headings "
            f"JOIN src{n}.documents sd ON sd.doc_id = s.doc_id AND sd.title = d.title")


def _uncovered(n_sources: int) -> str:
    covered = " UNION ".join(f"SELECT c.rowid FROM main.chunks c {_match(n)}"
                             for n in range(n_sources))
    return f"{_ROWS} WHERE c.rowid NOT IN ({covered})" if covered else _ROWS


def _embed(encode, rows: dict, batch_size: int, progress) -> dict[int, tuple[tuple, np.ndarray]]:
    """rowid -> ((chunk_id, title, headings, text), vector) for the given chunk rows."""
    out: dict[int, tuple[tuple, np.ndarray]] = {}
    items = list(rows.items())
    for i in range(0, len(items), batch_size):
        part = items[i: i + batch_size]
        texts = [_embedding_text(*key) for _, key in part]
        vectors = np.ascontiguousarray(encode(texts), dtype=np.float32)
        for (rowid, key), vector in zip(part, vectors):
            out[rowid] = (key, vector)
        if progress is not None:
            progress(min(i + batch_size, len(items)), len(items))
    return out


def _embedding_text(chunk_id: str, title: str, headings: str, text: str) -> str:
    """Exactly what the indexer embedded: the chunk's title and headings, then its text."""
    return Chunk(chunk_id=chunk_id, doc_id="", ordinal=0, text=text, title=title,
                 headings=tuple(json.loads(headings))).embedding_text()


def _usable_source(path: Path, model_id: str) -> bool:
    try:
        pinned = stored_embedder(path)
    except IndexStoreError as exc:
        log.warning("not reusing vectors from %s: %s", path, exc)
        return False
    if not same_model(pinned, model_id):  # expected: the registry keeps every model's vectors
        log.debug("not reusing vectors from %s: they are of %s, not %s", path, pinned, model_id)
        return False
    return True


def _connect_ro(path: Path) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise IndexStoreError(f"no index file at {path}")
    return sqlite3.connect(_uri(path, "ro"), uri=True)


def _uri(path: Path, mode: str | None = None) -> str:
    uri = Path(path).resolve().as_uri()
    return f"{uri}?mode={mode}" if mode else uri

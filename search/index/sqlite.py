"""The embedded index: one SQLite file, FTS5 for BM25, float32 vectors searched exactly with NumPy.

What the file holds:

* ``meta``: key/value pairs: schema version, vector dimension, index version (bumped by every
  committed transaction), and ``embedder``: the embedding model the vectors come from, once an
  embedder promotion or rollback has re-embedded the file (see ``search.index.sqlite_reembed``),
  and ``hash_model``: the model id the stored content hashes were computed with, recorded by the
  first re-embed (which keeps the hashes), so the indexer still finds unchanged documents
  unchanged after the switch (see ``hash_model_for``).
* ``documents``: one row per document, enough for the indexer to skip unchanged documents.
* ``chunks``: one row per chunk: the original text, the heading path (JSON) and the vector blob.
* ``chunks_fts``: FTS5 over title, headings and text, sharing rowids with ``chunks``. It holds a
  CJK-segmented copy of the text (bigrams, see ``search.text.segment_cjk``), so Chinese, Japanese
  and Korean are searchable; hits always show the original text from ``chunks``. A fourth column,
  ``source_key``, holds one opaque token per source, so a source filter is part of the MATCH
  expression and FTS5 applies it while merging doclists, instead of SQL joining every match to
  ``documents`` (which doubled filtered query time); its BM25 weight is 0, so it moves no score.

Concurrency: every sqlite3 call runs on one worker thread owned by the index, so the event loop
never blocks and no connection is shared between threads. That thread owns two connections: a
writer, used only inside ``transaction()``, and a reader for searches. In WAL mode the reader sees
the last committed snapshot, so searches during a long reindex keep answering from the previous
index, in this process and in every other one, and a process killed mid-transaction leaves only
uncommitted WAL frames behind, which SQLite ignores.

Embedding model: an index opened with ``embedder_model`` (the model this process embeds with)
never pairs its query vectors with another model's chunk vectors. When ``meta.embedder`` names
another model (another process promoted or rolled back the embedder and re-embedded the file),
k-NN answers nothing (hybrid search falls back to BM25) and a write that would leave vectors of
two models in the file is refused, until the process restarts with the active model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from search.errors import IndexStoreError
from search.models import Chunk, Document, Hit, SourceStats, StoredDocument, same_model
from search.index.fts_query import fts_query
from search.index.checks import distinct_sources, validated_vectors
from search.index.vectors import Delta, Vectors
from search.text import segment_cjk

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SQLITE_HEADER = b"SQLite format 3\x00"
_T = TypeVar("_T")

@dataclass
class _Transaction:
    base_version: int
    dim: int | None
    delta: Delta = field(default_factory=Delta)


class _Locked(Exception):
    """Another connection holds the write lock; the caller retries without blocking the thread."""


# --------------------------------------------------------------------------------------------
# Schema.
# --------------------------------------------------------------------------------------------

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

_HIT_COLUMNS = "c.rowid, c.chunk_id, c.doc_id, c.headings, c.text, d.source, d.title, d.path, d.url"


def _source_key(source: str) -> str:
    """One FTS5 token naming a source exactly: letters then digits, which no stemmer touches."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"src{int.from_bytes(digest[:8], 'big')}"


# User words search the content columns only, never the source keys.
_CONTENT_COLUMNS = "{title headings text}"


def _hit(row: Sequence[Any], score: float, similarity: float | None = None) -> Hit:
    _, chunk_id, doc_id, headings, text, source, title, path, url = row[:9]
    return Hit(
        chunk_id=chunk_id,
        doc_id=doc_id,
        source=source,
        title=title,
        text=text,
        score=score,
        headings=tuple(json.loads(headings)),
        path=path,
        url=url,
        similarity=similarity,
    )


# --------------------------------------------------------------------------------------------
# The index.
# --------------------------------------------------------------------------------------------


class SqliteIndexWriter:
    """The writes of one transaction; get one from ``SqliteIndex.transaction()``."""

    def __init__(self, index: SqliteIndex, tx: _Transaction) -> None:
        self._index = index
        self._tx = tx
        self._active = True

    async def upsert(self, document: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Replace everything stored for ``document.doc_id`` with these chunks and vectors."""
        self._check_active()
        rows = validated_vectors(document, chunks, vectors)
        await self._index._call(self._index._upsert_sync, self._tx, document, list(chunks), rows)

    async def delete(self, doc_id: str) -> None:
        """Remove a document and its chunks; a missing id is not an error."""
        self._check_active()
        await self._index._call(self._index._delete_sync, self._tx, doc_id)

    def _check_active(self) -> None:
        if not self._active:
            raise IndexStoreError("this index writer is used after its transaction ended")


class SqliteIndex:
    """The embedded hybrid index in one SQLite file (see the module docstring).

    Opens lazily on first use; ``await index.open()`` opens eagerly (and surfaces a bad file at
    start-up). Also an async context manager that closes the index on exit.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        title_weight: float = 2.0,
        headings_weight: float = 1.5,
        text_weight: float = 1.0,
        lock_timeout_s: float = 30.0,
        embedder_model: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.weights = (float(title_weight), float(headings_weight), float(text_weight))
        self.lock_timeout_s = lock_timeout_s
        self.embedder_model = embedder_model
        self._warned_model: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._vectors: Vectors | None = None  # touched only on the worker thread
        self._open_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._closed = False

    # ---- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> SqliteIndex:
        """Open (creating if needed) the file and load the vectors; idempotent."""
        async with self._open_lock:
            if self._closed:
                raise IndexStoreError(f"index {self.path} is closed")
            if self._executor is None:
                executor = ThreadPoolExecutor(1, thread_name_prefix="lorebot-sqlite")
                try:
                    await asyncio.wrap_future(executor.submit(self._guarded, self._open_sync))
                except BaseException:
                    executor.submit(self._close_sync)
                    executor.shutdown(wait=False)
                    raise
                self._executor = executor
        return self

    async def close(self) -> None:
        """Roll back any open transaction, close both connections and stop the thread."""
        async with self._open_lock:
            self._closed = True
            executor, self._executor = self._executor, None
            if executor is not None:
                await asyncio.wrap_future(executor.submit(self._close_sync))
                executor.shutdown(wait=False)

    async def __aenter__(self) -> SqliteIndex:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- the protocol ------------------------------------------------------------------------

    async def documents(self, source: str | None = None) -> dict[str, StoredDocument]:
        """Stored documents by id, optionally of one source only."""
        return await self._call(self._documents_sync, source)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteIndexWriter]:
        """A writer whose changes become visible to every reader at once, on normal exit.

        Transactions of one index run one at a time; another process's transaction is waited
        for (up to ``lock_timeout_s``) without blocking the searches of this one.
        """
        await self._ready()
        async with self._write_lock:
            tx = await self._begin()
            writer = SqliteIndexWriter(self, tx)
            try:
                yield writer
            except BaseException:
                writer._active = False
                # Shielded: a cancelled task must still roll back, or the writer connection
                # would stay inside the transaction and hold the file's write lock.
                await asyncio.shield(asyncio.wrap_future(self._submit(self._rollback_sync)))
                raise
            writer._active = False
            await asyncio.shield(asyncio.wrap_future(self._submit(self._commit_sync, tx)))

    async def bm25(self, query: str, k: int, sources: Sequence[str] | None = None) -> list[Hit]:
        """The ``k`` best chunks by BM25 (FTS5, weighted title/headings/text), best first."""
        expression = fts_query(query)
        if expression is None or k <= 0 or (sources is not None and not sources):
            return []
        return await self._call(self._bm25_sync, expression, k, distinct_sources(sources))

    async def knn(
        self, vector: np.ndarray, k: int, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        """The ``k`` chunks with the largest inner product with ``vector`` (exact), best first.

        Vectors are normalised, so the score is the cosine similarity; ``Hit.similarity``
        carries the same value.
        """
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if k <= 0 or (sources is not None and not sources):
            return []
        return await self._call(self._knn_sync, query, k, distinct_sources(sources))

    async def source_stats(self) -> list[SourceStats]:
        """Document and chunk counts and last indexed time per source, by source name."""
        return await self._call(self._source_stats_sync)

    async def version(self) -> int:
        """The index version: the number of transactions ever committed to this file."""
        return await self._call(self._version_sync)

    async def hash_model_for(self, model_id: str) -> str | None:
        """The model id to compute stored content hashes with, for an indexer embedding with
        ``model_id``; None: use ``model_id`` itself.

        Not part of the index protocol (the indexer asks only if the backend has it). After a
        re-embed the vectors are of a new model but the hashes still carry the old one: they
        stay valid for an indexer with the new model only because ``meta.embedder`` proves the
        vectors are its own. Any other model gets None, so a model changed in the settings (no
        re-embed) still sees every document as changed.
        """
        return await self._call(self._hash_model_sync, model_id)

    # ---- plumbing ----------------------------------------------------------------------------

    async def _ready(self) -> None:
        if self._executor is None:
            await self.open()

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` on the index's own thread, mapping sqlite3 errors to IndexStoreError."""
        await self._ready()
        return await asyncio.wrap_future(self._submit(fn, *args))

    def _submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Queue ``fn`` on the index's thread; jobs run one at a time, in submission order."""
        executor = self._executor
        if executor is None:
            raise IndexStoreError(f"index {self.path} is closed")
        return executor.submit(self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise self._store_error(exc) from exc

    def _store_error(self, exc: sqlite3.Error) -> IndexStoreError:
        message = str(exc)
        lowered = message.lower()
        if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
            return IndexStoreError(
                f"{self.path} is not a readable lorebot index ({message}). Move the file away "
                "(or delete it) and reindex: the index is rebuilt from the knowledge sources."
            )
        if "disk is full" in lowered or "disk i/o" in lowered:
            return IndexStoreError(
                f"cannot write the index {self.path} ({message}): free some disk space"
            )
        if "unable to open" in lowered or "readonly" in lowered:
            return IndexStoreError(
                f"cannot open the index {self.path} ({message}): check that its directory "
                "exists and is writable"
            )
        return IndexStoreError(f"index {self.path}: {message}")

    async def _begin(self) -> _Transaction:
        # Retry on the event loop rather than inside SQLite's busy handler: the worker thread
        # stays free to serve searches while another process finishes its reindex.
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.01
        while True:
            begun = self._submit(self._begin_sync)
            try:
                return await asyncio.shield(asyncio.wrap_future(begun))
            except asyncio.CancelledError:
                # BEGIN may already have run: queue the rollback behind it so the write lock
                # is not held by a transaction nobody will finish.
                self._submit(self._rollback_sync)
                raise
            except _Locked:
                if time.monotonic() >= deadline:
                    raise IndexStoreError(
                        f"index {self.path} is locked by another writer (another reindex is "
                        f"running?); gave up after {self.lock_timeout_s:g} s, try again later"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)

    # ---- worker-thread side: everything below runs on the index's own thread -----------------

    def _open_sync(self) -> None:
        self._check_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = sqlite3.connect(self.path, isolation_level=None)
        self._writer = writer
        # Two processes may create the same new file at once: let the loser wait here.
        writer.execute("PRAGMA busy_timeout = 5000")
        mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise IndexStoreError(f"index {self.path}: SQLite refused WAL mode (got {mode!r})")
        # NORMAL in WAL mode survives a killed process; only a power cut may lose the last commit.
        writer.execute("PRAGMA synchronous = NORMAL")
        self._create_schema(writer)
        # From now on a short busy timeout: waits for another process's write lock are retried
        # by `_begin` on the event loop, so they never hold this thread.
        writer.execute("PRAGMA busy_timeout = 50")
        reader = sqlite3.connect(self.path, isolation_level=None)
        self._reader = reader
        reader.execute("PRAGMA busy_timeout = 5000")
        reader.execute("PRAGMA query_only = 1")
        self._read(lambda conn: self._fresh_vectors())  # load the matrix once, at start-up

    def _check_file(self) -> None:
        if self.path.is_dir():
            raise IndexStoreError(f"index path {self.path} is a directory; point it at a file")
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as f:
                header = f.read(len(_SQLITE_HEADER))
            if header != _SQLITE_HEADER:
                raise IndexStoreError(
                    f"{self.path} is not a SQLite file, so not a lorebot index. Move it away "
                    "(or delete it) and reindex, or point the index at another path."
                )

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if tables and "meta" not in tables:
            raise IndexStoreError(
                f"{self.path} is a SQLite database but not a lorebot index; move it away or "
                "point the index at another path"
            )
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None or row[0] != SCHEMA_VERSION:
                raise IndexStoreError(
                    f"index {self.path} has schema version {row and row[0]!r}, this lorebot "
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

    def _close_sync(self) -> None:
        for conn in (self._writer, self._reader):
            if conn is None:
                continue
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
            except sqlite3.Error:  # closing must not fail; the file is consistent either way
                logger.warning("error closing index %s", self.path, exc_info=True)
        self._writer = self._reader = None
        self._vectors = None

    def _meta(self, conn: sqlite3.Connection) -> tuple[int, int | None]:
        values = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('version', 'dim')"))
        return int(values.get("version", 0)), values.get("dim")

    def _version_sync(self) -> int:
        return self._meta(self._reader)[0]

    # -- writes

    def _begin_sync(self) -> _Transaction:
        conn = self._writer
        if conn.in_transaction:  # a previous failure left it open; never build on it
            conn.execute("ROLLBACK")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise _Locked from exc
            raise
        version, dim = self._meta(conn)
        return _Transaction(base_version=version, dim=dim)

    def _commit_sync(self, tx: _Transaction) -> None:
        conn = self._writer
        if not conn.in_transaction:
            # SQLite itself rolls a transaction back on some errors (disk full, I/O); bumping
            # the version now would run outside any transaction.
            raise IndexStoreError(
                f"index {self.path}: the transaction was aborted by an earlier error; nothing "
                "was written, run the reindex again"
            )
        try:
            self._check_embedder_sync(conn, tx)
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        # Our own commit: patch the matrix in place when it reflects exactly the state this
        # transaction started from; otherwise the next search reloads it from the file.
        vectors = self._vectors
        if vectors is not None and vectors.version == tx.base_version:
            vectors.apply(tx.delta, tx.base_version + 1, tx.dim)

    def _check_embedder_sync(self, conn: sqlite3.Connection, tx: _Transaction) -> None:
        """Refuse to commit vectors of our model into a file pinned to another one.

        Allowed when this transaction rewrote every chunk (a full reindex with a new model):
        the pin then moves to our model.
        """
        if self.embedder_model is None or not tx.delta.added:
            return
        pinned = self._stored_embedder(conn)
        if pinned is None or same_model(pinned, self.embedder_model):
            return
        (chunks,) = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()
        if chunks > len(tx.delta.added):
            raise IndexStoreError(
                f"index {self.path} holds vectors of the embedding model {pinned!r}, but this "
                f"process embeds with {self.embedder_model!r}: writing would mix two models' "
                "vectors, so nothing was written. If the active embedder changed (`lorebot "
                "finetune embedder` or `lorebot models`), restart lorebot so it loads it; if "
                "you changed LOREBOT_SEARCH__EMBEDDING_MODEL, delete the index and reindex."
            )
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('embedder', ?)",
            (self.embedder_model,),
        )
        # This transaction rewrote every chunk, by an indexer the file gave no hash model (the
        # vectors were another model's): the hashes carry our model id, the default.
        conn.execute("DELETE FROM meta WHERE key = 'hash_model'")

    @staticmethod
    def _stored_embedder(conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
        return row[0] if row else None

    def _hash_model_sync(self, model_id: str) -> str | None:
        values = dict(self._reader.execute(
            "SELECT key, value FROM meta WHERE key IN ('embedder', 'hash_model')"))
        return (values.get("hash_model")
                if same_model(values.get("embedder"), model_id) else None)

    def _foreign_vectors(self, conn: sqlite3.Connection) -> bool:
        """True when the file's vectors come from another model than our query vectors."""
        if self.embedder_model is None:
            return False
        pinned = self._stored_embedder(conn)
        if pinned is None or same_model(pinned, self.embedder_model):
            return False
        if self._warned_model != pinned:
            self._warned_model = pinned
            logger.warning(
                "index %s was re-embedded with %s, but this process embeds queries with %s: "
                "dense search is off (BM25 only) until lorebot restarts with the active model",
                self.path, pinned, self.embedder_model,
            )
        return True

    def _rollback_sync(self) -> None:
        if self._writer is not None and self._writer.in_transaction:
            self._writer.execute("ROLLBACK")

    def _atomically(
        self, tx: _Transaction, write: Callable[[sqlite3.Connection, Delta], None]
    ) -> None:
        """Run one writer call under a savepoint: if it fails, none of it stays.

        The caller may catch the error and go on with the transaction (skip one bad document),
        so a half-written document must not reach the commit, nor its rows the vector matrix:
        ``write`` records its changes in a scratch delta merged only on success.
        """
        conn = self._writer
        conn.execute("SAVEPOINT writer_call")
        scratch = Delta()
        try:
            write(conn, scratch)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO writer_call")
                conn.execute("RELEASE writer_call")
            raise
        conn.execute("RELEASE writer_call")
        tx.delta.remove(list(scratch.removed))
        tx.delta.added.update(scratch.added)

    def _upsert_sync(
        self, tx: _Transaction, document: Document, chunks: list[Chunk], vectors: np.ndarray
    ) -> None:
        dim = vectors.shape[1] if chunks else None
        if dim is not None and tx.dim is not None and dim != tx.dim:
            raise self._dimension_error(dim, tx.dim)

        def write(conn: sqlite3.Connection, delta: Delta) -> None:
            if dim is not None and tx.dim is None:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dim', ?)", (dim,))
            delta.remove(self._delete_chunks(conn, document.doc_id))
            self._write_document(conn, delta, document, chunks, vectors)

        self._atomically(tx, write)
        if dim is not None and tx.dim is None:
            tx.dim = dim

    def _write_document(
        self,
        conn: sqlite3.Connection,
        delta: Delta,
        document: Document,
        chunks: list[Chunk],
        vectors: np.ndarray,
    ) -> None:
        conn.execute(
            """INSERT INTO documents
                   (doc_id, source, title, path, url, modified, content_hash, indexed_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (doc_id) DO UPDATE SET
                   source = excluded.source, title = excluded.title, path = excluded.path,
                   url = excluded.url, modified = excluded.modified,
                   content_hash = excluded.content_hash, indexed_at = excluded.indexed_at""",
            (
                document.doc_id, document.source, document.title, document.path, document.url,
                document.modified, document.content_hash, time.time(),
            ),
        )
        fts_rows = []
        for chunk, vector in zip(chunks, vectors):
            try:
                rowid = conn.execute(
                    "INSERT INTO chunks (chunk_id, doc_id, ordinal, headings, text, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        chunk.chunk_id, chunk.doc_id, chunk.ordinal,
                        json.dumps(list(chunk.headings), ensure_ascii=False), chunk.text,
                        vector.tobytes(),
                    ),
                ).lastrowid
            except sqlite3.IntegrityError as exc:
                raise IndexStoreError(
                    f"chunk id {chunk.chunk_id!r} of document {document.doc_id!r} is already "
                    "stored (for this or another document); chunk ids must be unique"
                ) from exc
            delta.added[rowid] = (document.source, vector)
            fts_rows.append(
                (
                    rowid,
                    segment_cjk(chunk.title or document.title),
                    segment_cjk(" ".join(chunk.headings)),
                    segment_cjk(chunk.text),
                    _source_key(document.source),
                )
            )
        conn.executemany(
            "INSERT INTO chunks_fts (rowid, title, headings, text, source_key) "
            "VALUES (?, ?, ?, ?, ?)",
            fts_rows,
        )

    def _delete_sync(self, tx: _Transaction, doc_id: str) -> None:
        def write(conn: sqlite3.Connection, delta: Delta) -> None:
            delta.remove(self._delete_chunks(conn, doc_id))
            conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))

        self._atomically(tx, write)

    @staticmethod
    def _delete_chunks(conn: sqlite3.Connection, doc_id: str) -> list[int]:
        rows = conn.execute("SELECT rowid FROM chunks WHERE doc_id = ?", (doc_id,))
        rowids = [rowid for (rowid,) in rows]
        if rowids:
            conn.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(r,) for r in rowids])
            conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        return rowids

    def _dimension_error(self, got: int, stored: int) -> IndexStoreError:
        return IndexStoreError(
            f"index {self.path} holds {stored}-dimensional vectors but got {got} dimensions: it "
            "was built with another embedding model. Rebuild it: delete the file and reindex "
            "with the current model."
        )

    # -- reads (reader connection: always the last committed state)

    def _fresh_vectors(self) -> Vectors:
        """The vector matrix of the committed state; reloaded when another connection commits.

        Call inside a read transaction, so the version read here matches the rows read next.
        The version in ``meta`` changes with every commit from any process, so comparing it is
        the cheap check; our own commits patch the matrix already (see ``_commit_sync``).
        """
        version, dim = self._meta(self._reader)
        vectors = self._vectors
        if vectors is not None and vectors.version == version:
            return vectors
        vectors = Vectors.empty(version, dim)
        rowids, codes, blobs = [], [], []
        for rowid, source, blob in self._reader.execute(
            "SELECT c.rowid, d.source, c.vector FROM chunks c "
            "JOIN documents d ON d.doc_id = c.doc_id ORDER BY c.rowid"
        ):
            rowids.append(rowid)
            codes.append(vectors.code(source))
            blobs.append(blob)
        if rowids:
            if dim is None or any(len(b) != dim * 4 for b in blobs):
                raise IndexStoreError(
                    f"index {self.path} has vectors of inconsistent size (corrupt index); "
                    "delete the file and reindex"
                )
            vectors.rowids = np.array(rowids, dtype=np.int64)
            vectors.source_codes = np.array(codes, dtype=np.int32)
            vectors.matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, dim)
        self._vectors = vectors
        logger.debug("loaded %d vectors from %s (version %d)", len(rowids), self.path, version)
        return vectors

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in one read transaction: every statement sees the same snapshot."""
        conn = self._reader
        conn.execute("BEGIN")
        try:
            result = fn(conn)
        except BaseException:
            if conn.in_transaction:  # keep the original error, not one from ending the read
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _bm25_sync(self, expression: str, k: int, sources: list[str] | None) -> list[Hit]:
        match = f"{_CONTENT_COLUMNS} : ({expression})"
        if sources is not None:
            keys = " OR ".join(f'"{_source_key(source)}"' for source in sources)
            match = f"source_key : ({keys}) AND {match}"
        sql = (
            f"SELECT {_HIT_COLUMNS}, top.rank FROM ("
            "  SELECT rowid, bm25(chunks_fts, ?, ?, ?, 0.0) AS rank FROM chunks_fts"
            "  WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?"
            ") AS top JOIN chunks c ON c.rowid = top.rowid JOIN documents d ON d.doc_id = c.doc_id "
            "ORDER BY top.rank, c.rowid"
        )
        params = (*self.weights, match, k)
        # FTS5's bm25() is negative, lower is better; hits score higher-is-better.
        return self._read(lambda conn: [_hit(row, -row[9]) for row in conn.execute(sql, params)])

    def _knn_sync(self, query: np.ndarray, k: int, sources: list[str] | None) -> list[Hit]:
        def run(conn: sqlite3.Connection) -> list[Hit]:
            # Checked in the same read transaction as the vectors: never another model's.
            if self._foreign_vectors(conn):
                return []
            vectors = self._fresh_vectors()
            if vectors.dim is None or not len(vectors.rowids):
                return []
            if query.shape[0] != vectors.dim:
                raise self._dimension_error(query.shape[0], vectors.dim)
            best = vectors.nearest(query, k, sources)
            if not best:
                return []
            rows = {
                row[0]: row
                for row in conn.execute(
                    f"SELECT {_HIT_COLUMNS} FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
                    "WHERE c.rowid IN (SELECT value FROM json_each(?))",
                    (json.dumps([rowid for rowid, _ in best]),),
                )
            }
            return [_hit(rows[r], s, similarity=s) for r, s in best if r in rows]

        return self._read(run)

    def _documents_sync(self, source: str | None) -> dict[str, StoredDocument]:
        sql = "SELECT doc_id, source, content_hash, path, url FROM documents"
        rows = self._reader.execute(
            sql + (" WHERE source = ?" if source is not None else ""),
            (source,) if source is not None else (),
        )
        return {r[0]: StoredDocument(*r) for r in rows}

    def _source_stats_sync(self) -> list[SourceStats]:
        rows = self._reader.execute(
            """SELECT d.source, COUNT(*), COALESCE(SUM(c.n), 0), MAX(d.indexed_at)
               FROM documents d
               LEFT JOIN (SELECT doc_id, COUNT(*) AS n FROM chunks GROUP BY doc_id) c
                   ON c.doc_id = d.doc_id
               GROUP BY d.source ORDER BY d.source"""
        )
        return [SourceStats(source, docs, chunks, last) for source, docs, chunks, last in rows]

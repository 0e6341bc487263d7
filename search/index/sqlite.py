"""The embedded index: one SQLite file, FTS5 for BM25, float32 vectors searched exactly with NumPy.

What the file holds, and the checks made before trusting one: ``search.index.sqlite_schema``.
Writes (one transaction) run in ``search.index.sqlite_writes``, searches in
``search.index.sqlite_reads``; both are mixed into ``SqliteIndex``, which owns the connections,
the vector matrix and the thread they run on.

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
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from search.errors import IndexStoreError
from search.index.checks import distinct_sources, validated_vectors
from search.index.fts_query import fts_query
from search.index.sqlite_reads import SqliteReads
# SCHEMA_VERSION is imported from here too, as before the schema had a module of its own.
from search.index.sqlite_schema import (  # noqa: F401
    SCHEMA_VERSION,
    check_file,
    create_schema,
    store_error,
)
from search.index.sqlite_writes import Locked, SqliteWrites, Transaction
from search.index.vectors import Vectors
from search.models import Chunk, Document, Hit, SourceStats, StoredDocument

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class SqliteIndexWriter:
    """The writes of one transaction; get one from ``SqliteIndex.transaction()``."""

    def __init__(self, index: SqliteIndex, tx: Transaction) -> None:
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


class SqliteIndex(SqliteReads, SqliteWrites):
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
            raise store_error(self.path, exc) from exc

    async def _begin(self) -> Transaction:
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
            except Locked:
                if time.monotonic() >= deadline:
                    raise IndexStoreError(
                        f"index {self.path} is locked by another writer (another reindex is "
                        f"running?); gave up after {self.lock_timeout_s:g} s, try again later"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)

    # ---- worker-thread side: everything below runs on the index's own thread -----------------
    # (as do the reads and writes of SqliteReads and SqliteWrites)

    def _open_sync(self) -> None:
        check_file(self.path)
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
        create_schema(writer, self.path)
        # From now on a short busy timeout: waits for another process's write lock are retried
        # by `_begin` on the event loop, so they never hold this thread.
        writer.execute("PRAGMA busy_timeout = 50")
        reader = sqlite3.connect(self.path, isolation_level=None)
        self._reader = reader
        reader.execute("PRAGMA busy_timeout = 5000")
        reader.execute("PRAGMA query_only = 1")
        self._read(lambda conn: self._fresh_vectors())  # load the matrix once, at start-up

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

"""The write side of the embedded index: one write transaction, on the index's own thread.

``SqliteIndex`` mixes ``SqliteWrites`` in and owns the writer connection, the vector matrix and
the worker thread; everything here runs on that thread. A transaction is ``BEGIN IMMEDIATE`` on
the writer connection; each writer call runs under a savepoint (see ``_atomically``), and the
commit bumps ``meta.version`` and patches the in-memory vector matrix (see ``_commit_sync``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.errors import IndexStoreError
from search.index.sqlite_schema import (
    dimension_error,
    source_key,
    stored_embedder,
    version_and_dim,
)
from search.index.vectors import Delta, Vectors
from search.models import Chunk, Document, same_model
from search.text import segment_cjk


@dataclass
class Transaction:
    base_version: int
    dim: int | None
    delta: Delta = field(default_factory=Delta)


class Locked(Exception):
    """Another connection holds the write lock; the caller retries without blocking the thread."""


class SqliteWrites:
    """The writes of ``SqliteIndex``, run on its thread with its writer connection."""

    # Set by SqliteIndex, which owns the connection and the matrix.
    path: Path
    embedder_model: str | None
    _writer: sqlite3.Connection | None
    _vectors: Vectors | None

    def _begin_sync(self) -> Transaction:
        conn = self._writer
        if conn.in_transaction:  # a previous failure left it open; never build on it
            conn.execute("ROLLBACK")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise Locked from exc
            raise
        version, dim = version_and_dim(conn)
        return Transaction(base_version=version, dim=dim)

    def _commit_sync(self, tx: Transaction) -> None:
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

    def _check_embedder_sync(self, conn: sqlite3.Connection, tx: Transaction) -> None:
        """Refuse to commit vectors of our model into a file pinned to another one.

        Allowed when this transaction rewrote every chunk (a full reindex with a new model):
        the pin then moves to our model.
        """
        if self.embedder_model is None or not tx.delta.added:
            return
        pinned = stored_embedder(conn)
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

    def _rollback_sync(self) -> None:
        if self._writer is not None and self._writer.in_transaction:
            self._writer.execute("ROLLBACK")

    def _atomically(
        self, tx: Transaction, write: Callable[[sqlite3.Connection, Delta], None]
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
        self, tx: Transaction, document: Document, chunks: list[Chunk], vectors: np.ndarray
    ) -> None:
        dim = vectors.shape[1] if chunks else None
        if dim is not None and tx.dim is not None and dim != tx.dim:
            raise dimension_error(self.path, dim, tx.dim)

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
                    source_key(document.source),
                )
            )
        conn.executemany(
            "INSERT INTO chunks_fts (rowid, title, headings, text, source_key) "
            "VALUES (?, ?, ?, ?, ?)",
            fts_rows,
        )

    def _delete_sync(self, tx: Transaction, doc_id: str) -> None:
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

"""The read side of the embedded index: searches and listings, on the index's own thread.

``SqliteIndex`` mixes ``SqliteReads`` in and owns the reader connection, the vector matrix and
the worker thread; everything here runs on that thread. Reads use the reader connection, which
in WAL mode always sees the last committed state; a search runs in one read transaction (see
``_read``), so the vector matrix and the rows it points at come from the same snapshot.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from search.errors import IndexStoreError
from search.index.sqlite_schema import (
    dimension_error,
    source_key,
    stored_embedder,
    version_and_dim,
)
from search.index.vectors import Vectors
from search.models import Hit, SourceStats, StoredDocument, same_model

# The name the index logged under before its reads moved here, so log settings keep applying.
logger = logging.getLogger("search.index.sqlite")

_T = TypeVar("_T")

_HIT_COLUMNS = "c.rowid, c.chunk_id, c.doc_id, c.headings, c.text, d.source, d.title, d.path, d.url"

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


class SqliteReads:
    """The reads of ``SqliteIndex``, run on its thread with its reader connection."""

    # Set by SqliteIndex, which owns the connection and the matrix.
    path: Path
    weights: tuple[float, float, float]
    embedder_model: str | None
    _warned_model: str | None
    _reader: sqlite3.Connection | None
    _vectors: Vectors | None

    def _version_sync(self) -> int:
        return version_and_dim(self._reader)[0]

    def _hash_model_sync(self, model_id: str) -> str | None:
        values = dict(self._reader.execute(
            "SELECT key, value FROM meta WHERE key IN ('embedder', 'hash_model')"))
        return (values.get("hash_model")
                if same_model(values.get("embedder"), model_id) else None)

    def _foreign_vectors(self, conn: sqlite3.Connection) -> bool:
        """True when the file's vectors come from another model than our query vectors."""
        if self.embedder_model is None:
            return False
        pinned = stored_embedder(conn)
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

    def _fresh_vectors(self) -> Vectors:
        """The vector matrix of the committed state; reloaded when another connection commits.

        Call inside a read transaction, so the version read here matches the rows read next.
        The version in ``meta`` changes with every commit from any process, so comparing it is
        the cheap check; our own commits patch the matrix already (see
        ``SqliteWrites._commit_sync``).
        """
        version, dim = version_and_dim(self._reader)
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
            keys = " OR ".join(f'"{source_key(source)}"' for source in sources)
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
                raise dimension_error(self.path, query.shape[0], vectors.dim)
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

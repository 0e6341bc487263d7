"""Writers of the OpenSearch backend: the buffered transaction writer and the rebuild writer.

See ``search.index.opensearch_commit`` for when their writes reach the cluster and become
visible.
"""

from __future__ import annotations

import asyncio
import pickle
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from search.errors import IndexStoreError
from search.index.checks import validated_vectors
# The writers need only the cluster plumbing of the index (bulk, refresh, delete-by-query,
# mapping the vector field), so they name ClusterAccess: OpenSearchIndex imports this module.
from search.index.opensearch_cluster import ClusterAccess
from search.index.opensearch_records import chunk_actions, doc_records_query, document_action
from search.models import Chunk, Document


class Spool:
    """The buffered writes of one transaction, in order; memory first, then a temporary file.

    Only upserts are stored (pickled records in a file this process created and reads back);
    deletes are remembered as "the last operation on this document was number n", which is all
    the commit needs: a document's last upsert is written unless a later delete, or a later
    clearing of its source, superseded it.
    """

    def __init__(self, memory_bytes: int) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=memory_bytes)
        self._seq = 0
        self.last_op: dict[str, int] = {}  # doc_id -> number of its last operation
        self.cleared: dict[str, int] = {}  # source -> number of its last clearing
        self.dim: int | None = None
        self.upserts = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def empty(self) -> bool:
        return not self.last_op and not self.cleared

    def add_upsert(self, document: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        seq = self._next()
        # A local temporary file, buffered: microseconds per record, so written inline.
        pickle.dump((seq, document, chunks, vectors), self._file, pickle.HIGHEST_PROTOCOL)
        self.last_op[document.doc_id] = seq
        self.upserts += 1

    def add_delete(self, doc_id: str) -> None:
        self.last_op[doc_id] = self._next()

    def add_clear(self, source: str) -> None:
        self.cleared[source] = self._next()

    async def final_upserts(self) -> AsyncIterator[tuple[Document, list[Chunk], np.ndarray]]:
        """The upserts that survive to the commit, in the order they were made."""
        self._file.seek(0)
        while True:
            batch = await asyncio.to_thread(self._read, 256)
            for seq, document, chunks, vectors in batch:
                if self.last_op.get(document.doc_id) != seq:
                    continue
                if self.cleared.get(document.source, 0) > seq:
                    continue
                yield document, chunks, vectors
            if len(batch) < 256:
                return

    def _read(self, n: int) -> list[tuple]:
        records = []
        for _ in range(n):
            try:
                records.append(pickle.load(self._file))
            except EOFError:
                break
        return records

    def close(self) -> None:
        self._file.close()


class OpenSearchIndexWriter:
    """Buffered writes of one ``OpenSearchIndex.transaction()``; sent when it commits."""

    def __init__(self, index: ClusterAccess, spool: Spool, live_dim: int | None) -> None:
        self._index = index
        self._spool = spool
        self._live_dim = live_dim
        self._active = True

    async def upsert(
        self, document: Document, chunks: Sequence[Chunk], vectors: np.ndarray
    ) -> None:
        """Replace everything stored for ``document.doc_id`` with these chunks and vectors."""
        self._check_active()
        rows = validated_vectors(document, chunks, vectors)
        if chunks:
            dim = rows.shape[1]
            known = self._spool.dim or self._live_dim
            if known is not None and dim != known:
                raise self._index._dimension_error(dim, known)
            self._spool.dim = dim
        self._spool.add_upsert(document, list(chunks), rows)

    async def delete(self, doc_id: str) -> None:
        """Remove a document and its chunks; a missing id is not an error."""
        self._check_active()
        self._spool.add_delete(doc_id)

    async def delete_source(self, source: str) -> None:
        """Remove every document of ``source`` written before this call (by anyone)."""
        self._check_active()
        self._spool.add_clear(source)

    def _check_active(self) -> None:
        if not self._active:
            raise IndexStoreError("this index writer is used after its transaction ended")


class OpenSearchRebuildWriter:
    """Writes of one ``OpenSearchIndex.rebuild()``: straight into the new physical index."""

    def __init__(self, index: ClusterAccess, target: str, dim: int | None) -> None:
        self._index = index
        self.target = target
        self._dim = dim
        self._write_id = uuid.uuid4().hex
        self._pending: list[dict[str, Any]] = []
        self._written: set[str] = set()
        self._active = True
        self.documents = 0
        self.chunks = 0

    async def upsert(
        self,
        document: Document,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        *,
        indexed_at: float | None = None,
    ) -> None:
        """Add a document with its chunks and vectors to the new index.

        ``indexed_at`` keeps a copied document's original indexing time (default: now).
        """
        self._check_active()
        rows = validated_vectors(document, chunks, vectors)
        if chunks:
            dim = rows.shape[1]
            if self._dim is None:
                await self._index._add_vector_field(self.target, dim)
                self._dim = dim
            elif dim != self._dim:
                raise self._index._dimension_error(dim, self._dim)
        if document.doc_id in self._written:
            await self.delete(document.doc_id)
        # A new physical index is mapped from PROPERTIES, so it has the combined field.
        self._pending += chunk_actions(self.target, document, chunks, rows, self._write_id,
                                       self._index.weights)
        self._pending.append(
            document_action(
                self.target, document, len(chunks), self._write_id,
                time.time() if indexed_at is None else indexed_at,
            )
        )
        self._written.add(document.doc_id)
        self.documents += 1
        self.chunks += len(chunks)
        if len(self._pending) >= self._index.bulk_chunk_size:
            await self.flush()

    async def delete(self, doc_id: str) -> None:
        """Remove a document written earlier in this rebuild (rare: costs a refresh)."""
        self._check_active()
        if doc_id not in self._written:
            return
        await self.flush()
        await self._index._refresh(self.target)
        await self._index._delete_by_query(self.target, doc_records_query([doc_id]))
        self._written.discard(doc_id)

    async def flush(self) -> None:
        """Send the buffered actions."""
        pending, self._pending = self._pending, []
        if pending:
            await self._index._bulk(pending, f"writing to {self.target}")

    def _check_active(self) -> None:
        if not self._active:
            raise IndexStoreError("this index writer is used after its rebuild ended")

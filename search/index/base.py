"""The index protocol every backend implements, and the contract tests hold them to.

Fusion and reranking live above this seam, so every backend ranks the same way: an index only
answers BM25 and k-NN queries and stores documents atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import numpy as np

from search.models import Chunk, Document, Hit, SourceStats, StoredDocument


class IndexWriter(Protocol):
    """Writes inside one transaction; nothing is visible to readers until the transaction ends."""

    async def upsert(self, document: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Replace everything stored for ``document.doc_id`` with these chunks and vectors.

        ``vectors`` has one L2-normalised float32 row per chunk, in the same order.
        """

    async def delete(self, doc_id: str) -> None:
        """Remove a document and its chunks; a missing id is not an error."""


class SearchIndex(Protocol):
    """A hybrid index: BM25 over title, headings and text, exact or approximate k-NN on vectors."""

    async def documents(self, source: str | None = None) -> dict[str, StoredDocument]:
        """Stored documents by id, optionally of one source only."""

    def transaction(self) -> AbstractAsyncContextManager[IndexWriter]:
        """A writer whose changes become visible all at once when the block exits normally.

        An exception inside the block, or a process killed inside it, leaves the index exactly as
        it was before.
        """

    async def bm25(self, query: str, k: int, sources: Sequence[str] | None = None) -> list[Hit]:
        """The ``k`` best chunks by BM25, best first; ``sources`` restricts the search."""

    async def knn(
        self, vector: np.ndarray, k: int, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        """The ``k`` chunks nearest to ``vector`` by inner product, best first."""

    async def source_stats(self) -> list[SourceStats]:
        """Document and chunk counts and last indexed time per source."""

    async def close(self) -> None:
        """Release files, connections and threads."""

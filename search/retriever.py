"""The retriever: BM25 and k-NN candidates, fused with RRF, optionally reranked.

Fusion and reranking live here, above the index protocol, so every backend ranks the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from search.embedding import Embedder
from search.errors import SearchError
from search.fusion_docs import FUSIONS
from search.fusion_weights import FusionWeights, embedder_languages, fusion_weights
from search.index.base import SearchIndex
from search.models import Hit
from search.rerank import Reranker

Mode = Literal["bm25", "dense", "hybrid", "rerank"]


@runtime_checkable
class HybridCandidates(Protocol):
    """An index that answers BM25 and k-NN for one query in one call (optional).

    ``hybrid_candidates`` returns ``(bm25_hits, knn_hits)``, each exactly what ``bm25()`` and
    ``knn()`` would return: the retriever still fuses them itself.
    """

    async def hybrid_candidates(
        self, query: str, vector: np.ndarray, k: int, sources: Sequence[str] | None = None
    ) -> tuple[list[Hit], list[Hit]]: ...


MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid", "rerank")


class Retriever:
    """Answers ``search(query, mode=…, k=…)`` with chunk hits, best first."""

    def __init__(
        self,
        index: SearchIndex,
        embedder: Embedder,
        reranker: Reranker | None = None,
        *,
        candidates: int = 100,
        rrf_k: int = 60,
        bm25_weight: float = 1.0,
        dense_weight: float = 1.0,
        rerank_depth: int = 30,
        default_mode: Mode | None = None,
        language_aware: bool = True,
        languages: Sequence[str] | None = None,
        weak_share: float = 0.5,
        weak_factor: float = 0.0,
        fusion_level: str = "chunk",
    ):
        self.index = index
        self.embedder = embedder
        self.reranker = reranker
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.weights = (bm25_weight, dense_weight)
        # Per-query weights (search.fusion_weights): off keeps ``weights`` for every query.
        self.language_aware = language_aware
        self.languages = tuple(languages) if languages else None
        self.weak_share, self.weak_factor = weak_share, weak_factor
        self.rerank_depth = rerank_depth
        if fusion_level not in FUSIONS:
            raise SearchError(f"unknown fusion level {fusion_level!r}; use one of "
                              f"{', '.join(FUSIONS)}")
        self._fuse = FUSIONS[fusion_level]  # chunk- or document-level RRF, one signature
        self._mode_setting = default_mode  # None: the mode follows the reranker (use_models)
        self.default_mode: Mode = default_mode or ("rerank" if reranker else "hybrid")
        self._memo: dict | None = None

    @contextlib.contextmanager
    def reusing_candidates(self):
        """Within the block each query's BM25 and k-NN lists are searched once and reused: for
        passes that differ only in fusion weights (fitting a dense weight on the gate's
        questions), which would otherwise embed and search every query once per weight."""
        self._memo = {}
        try:
            yield self
        finally:
            self._memo = None

    def use_models(self, embedder: Embedder, reranker: Reranker | None) -> None:
        """Search with other models from now on (a promotion or rollback elsewhere, see
        ``bot.runtime.reload``); the caller makes sure no search is in flight.

        An unset default mode follows the reranker, as at construction.
        """
        self.embedder = embedder
        self.reranker = reranker
        self.default_mode = self._mode_setting or ("rerank" if reranker else "hybrid")
        if self._memo is not None:
            self._memo.clear()  # lists searched with the old embedder's vectors

    @property
    def has_reranker(self) -> bool:
        return self.reranker is not None

    async def search(
        self,
        query: str,
        *,
        mode: Mode | None = None,
        k: int = 10,
        sources: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; ``sources`` restricts the search (None: all)."""
        mode = mode or self.default_mode
        if mode not in MODES:
            raise SearchError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if mode == "rerank" and self.reranker is None:
            raise SearchError(
                "search mode 'rerank' needs a reranker: set LOREBOT_SEARCH__RERANKER_MODEL to a "
                "CrossEncoder name or path, or use --mode hybrid"
            )
        query = clean_query(query)
        if not query.strip():
            return []
        if mode == "bm25":
            return (await self.index.bm25(query, max(k, 1), sources))[:k]
        if mode == "dense":
            vector = await self.embedder.embed_query(query)
            return (await self.index.knn(vector, max(k, 1), sources))[:k]

        depth = max(self.candidates, k)
        if getattr(self.index, "server_hybrid", None):
            # Opt-in (OpenSearch search pipeline): the cluster fuses, so this ranking is not
            # the shared client-side RRF, and its hits carry no cosine similarity.
            vector = await self.embedder.embed_query(query)
            fused = await self.index.server_hybrid_search(query, vector, depth, sources)
        else:
            lexical, semantic = await self._candidates(query, depth, sources)
            w = self.fusion_for(query)
            fused = self._fuse([lexical, semantic], k=self.rrf_k, weights=(w.bm25, w.dense))
        if mode == "hybrid":
            return fused[:k]
        # Only the head is rescored (the cost is one cross-encoder pass per hit); deeper hits
        # keep their fused order after it, so asking for many hits does not multiply the cost.
        head = fused[: self.rerank_depth]
        return ([*await self.reranker.rerank(query, head), *fused[len(head):]])[:k]

    def fusion_for(self, query: str) -> FusionWeights:
        """The RRF weights the hybrid and rerank modes use for ``query``, with the reason."""
        bm25, dense = self.weights
        # A fine-tuned embedder or query adapter in use brings the dense weight it was fitted
        # with (search.adapter, bot.runtime.factories.new_embedder).
        factor = getattr(self.embedder, "dense_factor", 1.0)
        dense *= factor
        fitted = (f"; dense x{factor:.3g}, fitted with the fine-tuned models in use"
                  if factor != 1.0 else "")
        if not self.language_aware:
            return FusionWeights(bm25, dense, f"configured weights (SEARCH__FUSION=fixed){fitted}")
        model = getattr(self.embedder, "model_id", "")
        w = fusion_weights(
            clean_query(query), embedder=model, languages=embedder_languages(model, self.languages),
            bm25_weight=bm25, dense_weight=dense, weak_share=self.weak_share,
            weak_factor=self.weak_factor,
        )
        if fitted:
            w = dataclasses.replace(w, reason=w.reason + fitted)
        if getattr(self.index, "server_hybrid", None):
            # Said, not hidden: the cluster's search pipeline fuses with its own fixed weights.
            return dataclasses.replace(w, reason=w.reason + "; not applied: the cluster fuses "
                                       "(OPENSEARCH__SERVER_HYBRID)")
        return w

    async def candidate_lists(
        self, query: str, *, k: int | None = None, sources: Sequence[str] | None = None
    ) -> tuple[list[Hit], list[Hit]]:
        """The BM25 and k-NN lists hybrid mode fuses (``candidates`` deep unless ``k`` is larger),
        so a caller can fuse them with other weights (:meth:`fuse`) without searching again."""
        return await self._candidates(clean_query(query), max(self.candidates, k or 0), sources)

    def fuse(self, lexical: Sequence[Hit], semantic: Sequence[Hit],
             weights: tuple[float, float]) -> list[Hit]:
        """RRF of the two lists at ``weights`` (bm25, dense), as hybrid mode fuses them."""
        return self._fuse([list(lexical), list(semantic)], k=self.rrf_k, weights=weights)

    async def _candidates(
        self, query: str, depth: int, sources: Sequence[str] | None
    ) -> tuple[list[Hit], list[Hit]]:
        """BM25 and k-NN candidate lists; fusion is the caller's, so every backend ranks alike."""
        memo = self._memo
        if memo is None:
            return await self._search_candidates(query, depth, sources)
        key = (query, depth, tuple(sources) if sources is not None else None)
        if key not in memo:
            memo[key] = await self._search_candidates(query, depth, sources)
        return memo[key]

    async def _search_candidates(
        self, query: str, depth: int, sources: Sequence[str] | None
    ) -> tuple[list[Hit], list[Hit]]:
        if isinstance(self.index, HybridCandidates):
            # One round trip for both searches (OpenSearch `_msearch`); the query must be
            # embedded first, as the k-NN half needs the vector.
            vector = await self.embedder.embed_query(query)
            return await self.index.hybrid_candidates(query, vector, depth, sources)
        # Embedding runs on the model thread while the index answers BM25 on its own thread.
        vector, lexical = await asyncio.gather(
            self.embedder.embed_query(query), self.index.bm25(query, depth, sources)
        )
        return lexical, await self.index.knn(vector, depth, sources)


def clean_query(query: str) -> str:
    """A query every tokenizer and index accepts: bytes that were not UTF-8 (a Latin-1 terminal,
    ``$'vpn \\xff'``; Python keeps them as lone surrogates, which tokenizers reject with a
    TypeError) become U+FFFD, as do other lone surrogates."""
    try:
        query.encode("utf-8")
        return query
    except UnicodeEncodeError:
        pass
    try:
        return query.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that did not come from undecodable bytes
        return query.encode("utf-8", "replace").decode("utf-8")

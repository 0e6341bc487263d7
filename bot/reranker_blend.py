"""Fit a trained reranker's blend: how far its order replaces the fused order.

A reranker trained on a few hundred queries knows something the first stage does not, but not
everything the first stage knows; how much to trust it is measured, not assumed. Held-out training
queries (split by relevant document, like the gate's validation, and never the validation queries
themselves, so the gate still judges an unseen set) are ranked with every blend from 0 (the fused
order) to 1 (the reranker alone); the best nDCG@10 wins, the smaller weight on a tie.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from search.models import Hit
from search.models_runtime import run_model
from search.rerank import hit_text, rescored

BLENDS = tuple(i / 10 for i in range(11))


class _ScoreOnce:
    """A reranker that scores each (query, candidates) once and orders them by ``blend``, so
    every blend is tried without running the model again."""

    def __init__(self, reranker):
        self.reranker = reranker
        self.blend = 1.0
        self._scores: dict[tuple, list[float]] = {}

    async def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        key = (query, tuple(h.chunk_id for h in hits))
        if key not in self._scores:
            texts = [hit_text(h) for h in hits]
            self._scores[key] = await run_model(self.reranker.scores, query, texts)
        return rescored(hits, self._scores[key], self.blend)


async def fit_blend(
    new_retriever: Callable[[object], object],
    reranker,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, float]],
    *,
    key: Callable[[Hit], str],
    sources: Sequence[str] | None,
    fetch_k: int,
) -> tuple[float, dict[float, float]]:
    """(best blend, nDCG@10 of every blend tried). ``new_retriever(reranker)`` builds the
    retriever the reranker will serve in (rerank mode, the live settings)."""
    from search.evaluation import evaluate

    probe = _ScoreOnce(reranker)
    retriever = new_retriever(probe)
    table: dict[float, float] = {}
    for blend in BLENDS:
        probe.blend = blend
        result = await evaluate(retriever, queries, qrels, ["rerank"], depth=10, fetch_k=fetch_k,
                                key=key, sources=sources)
        table[blend] = round(result.results["rerank"]["ndcg@10"], 4)
    best = max(BLENDS, key=lambda b: (table[b], -b))
    return best, table

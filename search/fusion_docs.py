"""Document-level reciprocal rank fusion: documents are fused, chunks are returned.

Chunk-level fusion (`search.fusion`) credits a chunk for each list that holds it. A page whose
best BM25 chunk (a table row) and best dense chunk (its introduction) differ then gets two
single-list scores and loses to a page whose one chunk is in both lists. Here each list first
ranks *documents* by their best chunk in it, those document ranks are fused, and the documents'
chunks come back in that order, each document's chunks best first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from search.fusion import reciprocal_rank_fusion
from search.models import Hit


def document_fusion(
    rankings: Sequence[Sequence[Hit]],
    *,
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[Hit]:
    """Fuse ranked chunk lists by document, returning chunk hits.

    In each list a document's rank is the rank of its best chunk among the documents of that
    list (1 for the document of the first chunk, 2 for the next new document, …); a document
    scores ``sum(weight / (k + rank))`` over the lists holding it. The hits are every chunk of
    the lists, grouped by document in fused document order; within a document, in the order
    chunk-level fusion gives them, so the first hit of a document is its best chunk. Each
    hit's ``score`` is its document's fused score. Ties keep first-seen order.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    doc_scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        seen: set[str] = set()
        for hit in ranking:
            if hit.doc_id not in seen:
                seen.add(hit.doc_id)
                doc_scores[hit.doc_id] = doc_scores.get(hit.doc_id, 0.0) + weight / (k + len(seen))
    by_doc: dict[str, list[Hit]] = {}
    for hit in reciprocal_rank_fusion(rankings, k=k, weights=weights):
        by_doc.setdefault(hit.doc_id, []).append(hit)
    order = sorted(by_doc, key=lambda doc_id: -doc_scores[doc_id])  # stable: ties keep order
    return [
        dataclasses.replace(hit, score=doc_scores[doc_id])
        for doc_id in order
        for hit in by_doc[doc_id]
    ]


FUSIONS = {"chunk": reciprocal_rank_fusion, "document": document_fusion}
"""The fusion functions by level (``LOREBOT_SEARCH__FUSION_LEVEL``); they share one signature."""

"""Reciprocal rank fusion: one ranking from several, using ranks only (scores are incomparable)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from search.models import Hit


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]],
    *,
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[Hit]:
    """Fuse ranked hit lists: each hit scores ``sum(weight / (k + rank))`` over the lists holding it.

    Hits are identified by ``chunk_id``. The fused hits are copies whose ``score`` is the fused
    score; a known ``similarity`` from any list is kept. Ties keep first-seen order, so the result
    is deterministic.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    similarity: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (k + rank)
            first.setdefault(hit.chunk_id, hit)
            if hit.similarity is not None:
                similarity[hit.chunk_id] = hit.similarity
    order = sorted(scores, key=lambda cid: -scores[cid])  # sorted() is stable: ties keep order
    return [
        dataclasses.replace(first[cid], score=scores[cid], similarity=similarity.get(cid))
        for cid in order
    ]

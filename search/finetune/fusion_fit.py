"""The RRF dense weight that goes with a query adapter, fitted on its training queries out of fold.

An adapter makes the dense list better, so equal-weight fusion, right for the base model, now
under-trusts it (SciFact test, adapter trained on 518 queries: 0.767 nDCG@10 at the configured
weights, 0.777 with the dense weight x1.5). The factor cannot be fitted on the queries the adapter
trained on: there its dense list is near-perfect, which would always pick the heaviest weight. Nor
on the gate's held-out questions, which must stay unseen so the gate does not grade its own
fitting. So the training queries are split in folds; each fold is ranked by an adapter trained on
the other folds, as new questions will be, and the factor with the best mean nDCG@10 over all
folds is kept (the one nearest 1.0 on a tie).

Pure functions: the caller trains the fold adapters and fetches each query's two lists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from search.evaluation.metrics import ndcg_at_k
from search.evaluation.runner import rank_documents
from search.models import Hit

FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def folds(qids: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """``qids`` in ``k`` folds of (nearly) equal size, by a seeded hash: the same query always
    lands in the same fold, whatever the order it comes in."""
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    order = sorted(dict.fromkeys(qids),
                   key=lambda q: hashlib.sha256(f"{seed}:fold:{q}".encode()).hexdigest())
    return [order[i::k] for i in range(k)]


def factor_scores(
    lists: Mapping[str, tuple[Sequence[Hit], Sequence[Hit], tuple[float, float]]],
    qrels: Mapping[str, Mapping[str, float]],
    *,
    fuse: Callable[[Sequence[Hit], Sequence[Hit], tuple[float, float]], list[Hit]],
    key: Callable[[Hit], str],
    factors: Sequence[float] = FACTORS,
    fetch: int = 30,
    depth: int = 10,
) -> dict[float, float]:
    """Mean nDCG@``depth`` over the queries of ``lists`` ({qid: (bm25 hits, k-NN hits, the
    weights they would be fused with)}) for each dense-weight factor: the top ``fetch`` fused
    chunks ranked by document, as the evaluation ranks them."""
    if not lists:
        raise ValueError("no queries to fit the fusion weight on")
    out = {}
    for factor in factors:
        total = 0.0
        for qid, (lexical, semantic, (bm25, dense)) in lists.items():
            fused = fuse(lexical, semantic, (bm25, dense * factor))[:fetch]
            total += ndcg_at_k(rank_documents(fused, key, depth), qrels[qid], depth)
        out[factor] = round(total / len(lists), 10)
    return out


def best_factor(scores: Mapping[float, float]) -> float:
    """The factor with the best score; on a tie the one nearest 1.0 (the configured weights)."""
    return max(sorted(scores), key=lambda f: (scores[f], -abs(f - 1.0)))

"""Ranking metrics over one ranked list of ids and graded relevance judgements (qrels).

Definitions follow trec_eval (and so pytrec_eval, BEIR and ranx's defaults):

- a judgement's grade is its gain; grades <= 0 mean "not relevant" and add nothing;
- nDCG@k uses the linear gain ``grade`` and the discount ``1 / log2(rank + 1)`` (rank from 1);
  the ideal ranking is the judged grades sorted best first, cut at ``k``;
- recall@k divides by the number of relevant judgements, retrieved or not;
- MRR@k is the reciprocal rank of the first relevant id within the top ``k``, else 0;
- hit@k is 1 if any of the top ``k`` ids is relevant, else 0 (trec_eval's ``success.k``).

A ranking may repeat an id (several chunks of one document): only its first position counts,
so a document cannot earn gain twice.

Aggregation: a query none of whose judgements is relevant has no defined nDCG or recall (the ideal
is 0), so ``mean_metrics`` leaves it out of the mean and reports how many queries it averaged.
Note that trec_eval / pytrec_eval and ranx instead score such a query 0 and keep it in the mean;
on datasets where every judged query has a relevant document (SciFact and the other BEIR test
splits) the two conventions give the same numbers. A query with relevant judgements but no
results counts, with 0 (trec_eval's ``-c``): a retriever that returns nothing must not look better.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

Qrels = Mapping[str, float]
"""Judgements for one query: document id -> grade."""

MetricFn = Callable[[Sequence[str], Qrels, int], float]


def is_relevant(grade: float) -> bool:
    """A judgement counts as relevant when its grade is above 0 (trec_eval's relevance level 1)."""
    return grade > 0


def has_relevant(qrels: Qrels) -> bool:
    """Whether a query has at least one relevant judgement, i.e. whether it can be scored."""
    return any(is_relevant(g) for g in qrels.values())


def top_k(ranking: Iterable[str], k: int) -> list[str]:
    """The first ``k`` distinct ids of ``ranking``, in order (later duplicates are dropped)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    seen: set[str] = set()
    out: list[str] = []
    for doc_id in ranking:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        out.append(doc_id)
        if len(out) == k:
            break
    return out


def _dcg(gains: Iterable[float]) -> float:
    # Rank r (from 1) is discounted by log2(r + 1); enumerate gives i = r - 1.
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)


def ndcg_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` (0.0 when nothing is relevant)."""
    top = top_k(ranking, k)
    ideal = _dcg(sorted((g for g in qrels.values() if is_relevant(g)), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return _dcg(qrels.get(d, 0) for d in top) / ideal


def recall_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """Share of the relevant documents found in the top ``k`` (0.0 when nothing is relevant)."""
    top = top_k(ranking, k)
    n_relevant = sum(1 for g in qrels.values() if is_relevant(g))
    if n_relevant == 0:
        return 0.0
    found = sum(1 for d in top if is_relevant(qrels.get(d, 0)))
    return found / n_relevant


def mrr_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k``, else 0.0."""
    for rank, d in enumerate(top_k(ranking, k), start=1):
        if is_relevant(qrels.get(d, 0)):
            return 1.0 / rank
    return 0.0


def hit_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """1.0 if any of the top ``k`` documents is relevant, else 0.0."""
    return 1.0 if mrr_at_k(ranking, qrels, k) > 0 else 0.0


METRICS: dict[str, MetricFn] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "mrr": mrr_at_k,
    "hit": hit_at_k,
}


def parse_metric(name: str) -> tuple[MetricFn, int]:
    """Turn a name like ``"ndcg@10"`` into its function and cutoff."""
    base, sep, cutoff = name.partition("@")
    if base not in METRICS or not sep or not cutoff.isdigit() or int(cutoff) < 1:
        known = ", ".join(f"{m}@K" for m in METRICS)
        raise ValueError(f"unknown metric {name!r}; use one of {known} with K >= 1")
    return METRICS[base], int(cutoff)


def score_query(ranking: Sequence[str], qrels: Qrels, metrics: Sequence[str]) -> dict[str, float]:
    """Every metric in ``metrics`` (names like ``"recall@100"``) for one query."""
    out = {}
    for name in metrics:
        fn, k = parse_metric(name)
        out[name] = fn(ranking, qrels, k)
    return out


def mean_metrics(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Qrels],
    metrics: Sequence[str],
) -> tuple[dict[str, float], int]:
    """Mean of each metric over the queries of ``qrels`` that have a relevant judgement.

    ``run`` maps query id to its ranked ids; a scorable query missing from ``run`` scores 0.
    Returns the means and the number of queries averaged; with no scorable query the means are
    NaN, so an empty evaluation cannot be mistaken for a bad one.
    """
    scored = [qid for qid, judged in qrels.items() if has_relevant(judged)]
    totals = dict.fromkeys(metrics, 0.0)
    for qid in scored:
        for name, value in score_query(run.get(qid, ()), qrels[qid], metrics).items():
            totals[name] += value
    if not scored:
        return dict.fromkeys(metrics, math.nan), 0
    return {name: total / len(scored) for name, total in totals.items()}, len(scored)


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks.

    Same definition as ``numpy.percentile``'s default, without needing numpy for a few
    hundred latencies.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

"""Run a retriever over judged queries and score each search mode (the engine of `lorebot eval`).

The retriever returns chunks; judgements are about documents. A document is ranked by its best
chunk: chunk hits are mapped to document keys and only the first occurrence of each key is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from search.errors import SearchError
from search.evaluation.metrics import has_relevant, percentile, score_query, top_k
from search.models import Hit

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10", "hit@1", "hit@5", "hit@10")
"""The quality metrics reported per mode, in report order."""

LATENCIES: tuple[str, ...] = ("latency_ms_p50", "latency_ms_p95")
"""The latency figures reported per mode: percentiles of one search call, in milliseconds."""

Progress = Callable[[str, int, int], None]
"""Called after every query as ``progress(mode, done, total)``; ``total`` counts one mode."""


class EvaluationError(SearchError):
    """An evaluation cannot run (nothing to evaluate, bad arguments)."""


class Retriever(Protocol):
    """What ``evaluate`` needs from a retriever: chunk hits for a query, best first."""

    async def search(
        self, query: str, *, mode: str, k: int, sources: Sequence[str] | None = None
    ) -> list[Hit]: ...


@dataclass(frozen=True)
class EvalResult:
    """Scores per search mode over ``n_queries`` judged queries.

    ``results[mode]`` holds every name in ``METRICS`` and ``LATENCIES``. ``per_query[mode][qid]``
    holds the same metrics for one query plus its ``latency_ms``, for paired comparisons, and
    ``rankings[mode][qid]`` the document keys that query retrieved, best first (at most
    ``depth``): what `per_query_records` shows. Both are left out of ``as_dict``.
    """

    dataset: str
    split: str | None
    n_queries: int
    results: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict, repr=False)
    rankings: dict[str, dict[str, list[str]]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        """The JSON shape `lorebot eval` writes and benchmarks compare."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "n_queries": self.n_queries,
            "results": {
                mode: {name: scores[name] for name in (*METRICS, *LATENCIES)}
                for mode, scores in self.results.items()
            },
        }


def rank_documents(hits: Sequence[Hit], key: Callable[[Hit], str], depth: int) -> list[str]:
    """Document keys in the order of their best chunk, at most ``depth`` of them."""
    return top_k((key(hit) for hit in hits), depth)


async def evaluate(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, float]],
    modes: Sequence[str],
    *,
    depth: int = 100,
    key: Callable[[Hit], str] = lambda hit: hit.doc_id,
    progress: Progress | None = None,
    dataset: str = "custom",
    split: str | None = None,
    sources: Sequence[str] | None = None,
    fetch_k: int | None = None,
) -> EvalResult:
    """Search every judged query in every mode and score the document rankings.

    - Only queries with at least one relevant judgement are searched (see ``metrics`` on why
      the others cannot be scored); ``n_queries`` counts those searched.
    - Each search asks for ``fetch_k`` chunks (default ``2 * depth``) so that, after chunks of
      one document collapse into one entry, up to ``depth`` distinct documents remain.
      ``recall@100`` is only meaningful with ``depth >= 100``.
    - ``key`` maps a hit to the id the qrels use: ``doc_id`` for BEIR datasets,
      ``QuestionSet.key`` for team question files.
    - Queries run one at a time so latencies are not inflated by contention; warm the retriever
      (load its models) before calling, or the first query's latency includes loading.
    """
    if depth < 1:
        raise EvaluationError(f"depth must be at least 1, got {depth}")
    modes = list(dict.fromkeys(modes))  # a mode named twice is run once
    if not modes:
        raise EvaluationError("no search modes to evaluate; pass at least one, e.g. 'hybrid'")
    k = fetch_k if fetch_k is not None else 2 * depth
    if k < depth:
        raise EvaluationError(f"fetch_k ({k}) must be at least depth ({depth})")

    qids = [qid for qid in queries if has_relevant(qrels.get(qid, {}))]
    skipped = len(queries) - len(qids)
    if skipped:
        log.info("skipping %s of %s queries with no relevant judgement", skipped, len(queries))
    if not qids:
        raise EvaluationError(f"none of the {len(queries)} queries has a relevant judgement; "
                              "check that the qrels match the queries")
    if depth < 100:
        log.warning("depth %s < 100: recall@100 only sees the top %s documents", depth, depth)

    results: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    rankings: dict[str, dict[str, list[str]]] = {}
    for mode in modes:
        per_query[mode], rankings[mode] = {}, {}
        latencies: list[float] = []
        for done, qid in enumerate(qids, start=1):
            started = time.perf_counter()
            hits = await retriever.search(queries[qid], mode=mode, k=k, sources=sources)
            latency_ms = (time.perf_counter() - started) * 1000
            latencies.append(latency_ms)
            ranking = rank_documents(hits, key, depth)
            scores = score_query(ranking, qrels[qid], METRICS)
            per_query[mode][qid] = {**scores, "latency_ms": latency_ms}
            rankings[mode][qid] = ranking
            if progress is not None:
                progress(mode, done, len(qids))
        results[mode] = {
            name: sum(q[name] for q in per_query[mode].values()) / len(qids) for name in METRICS
        }
        results[mode]["latency_ms_p50"] = percentile(latencies, 50)
        results[mode]["latency_ms_p95"] = percentile(latencies, 95)
        log.info("%s: ndcg@10 %.4f over %s queries", mode, results[mode]["ndcg@10"], len(qids))
    return EvalResult(dataset, split, len(qids), results, per_query, rankings)

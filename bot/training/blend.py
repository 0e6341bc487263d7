"""A trained reranker's blend (how far its order replaces the fused order), fitted on the gate's
validation queries without letting the gate judge on what it fitted.

A reranker trained on a few hundred queries knows something the first stage does not, but not
everything the first stage knows; how much to trust it is measured, not assumed. It is measured on
the gate's held-out questions (bot.training.gate.gate_reranker), which no model of the stack
trained on: every model trained on the same data holds out the same ones
(search.finetune.data.split_for_gate). Training queries would not do: an embedder or adapter
trained on them makes the first stage look near-perfect there (held-out training queries gave
the fused order 0.875 nDCG@10 on SciFact, against 0.655 on validation), which would always pick
blend 0.

So that the gate does not grade its own fitting, its figure is cross-fitted: the held-out
questions are split in two random halves; each half is ranked with the blend that does best on
the other half (the guard with the blend best on all of them). The blend saved with the model is
the best on all held-out questions (the smaller weight on a tie). :func:`cross_fitted` does the
same over any two halves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from search.models import Hit
from search.models_runtime import run_model
from search.rerank import hit_text, rescored

BLENDS = tuple(i / 10 for i in range(11))
# per_query[blend][qid][metric]: one evaluation's per-query metrics for every blend tried.
PerBlend = Mapping[float, Mapping[str, Mapping[str, float]]]


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


async def per_blend_metrics(
    new_retriever: Callable[[object], object],
    reranker,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, float]],
    *,
    key: Callable[[Hit], str],
    sources: Sequence[str] | None,
    fetch_k: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[float, dict[str, dict[str, float]]]:
    """Per-query metrics of every blend. ``new_retriever(reranker)`` builds the retriever the
    reranker will serve in (rerank mode, the live settings). The model runs once per query (the
    first blend's pass, reported to ``progress(done, total)``)."""
    from search.evaluation import evaluate

    probe = _ScoreOnce(reranker)
    retriever = new_retriever(probe)
    out = {}
    runner_log = logging.getLogger("search.evaluation.runner")
    level = runner_log.level
    try:
        for n, blend in enumerate(BLENDS):
            probe.blend = blend
            result = await evaluate(
                retriever, queries, qrels, ["rerank"], depth=10, fetch_k=fetch_k, key=key,
                sources=sources,
                progress=(lambda _m, done, total: progress(done, total)) if n == 0 and progress
                else None)
            out[blend] = result.per_query["rerank"]
            runner_log.setLevel(logging.ERROR)  # its notes on the first pass hold for every one
    finally:
        runner_log.setLevel(level)
    return out


def best_blend(per_blend: PerBlend, qids: Sequence[str], metric: str = "ndcg@10",
               neutral: float = 0.0) -> float:
    """The blend (or any setting ``per_blend`` is keyed by) with the best mean ``metric`` over
    ``qids``; on a tie the one nearest ``neutral`` (the setting that changes nothing: blend 0,
    dense factor 1), the smaller of two equally near."""
    def mean(blend: float) -> float:
        return round(sum(per_blend[blend][q][metric] for q in qids) / len(qids), 10)

    return max(sorted(per_blend), key=lambda b: (mean(b), -abs(b - neutral)))


def cross_fitted(
    per_blend: PerBlend, halves: tuple[Sequence[str], Sequence[str]], metrics: Sequence[str]
) -> tuple[dict[str, float], tuple[float, float]]:
    """(mean ``metrics`` over both halves, each half ranked with the blend best on the other;
    those two blends). A half with no query: both halves use the blend best on the other."""
    a, b = halves
    blend_a = best_blend(per_blend, b) if b else best_blend(per_blend, a)
    blend_b = best_blend(per_blend, a) if a else blend_a
    rows = [per_blend[blend_a][q] for q in a] + [per_blend[blend_b][q] for q in b]
    return {m: sum(r[m] for r in rows) / len(rows) for m in metrics}, (blend_a, blend_b)

"""Fit the RRF dense weight a query adapter brings (search.finetune.fusion_fit): each fold of the
training queries ranked by an adapter trained on the other folds, never a gate query.

Only over the base embedder: a fine-tuned one learned these same training queries, so their
dense lists would look near-perfect whatever the adapter (SciFact: out-of-fold nDCG@10 0.914 at
x3, the heaviest weight tried); then the gate fits the factor on the held-out questions instead
(bot.training.gate.gate_dense_factor)."""

from __future__ import annotations

import asyncio
import time

from bot.training.gate import GATE_FETCH, search_sources
from bot.training.progress import report, say


async def fit_dense_factor(args, settings, services, data, base_embedder, examples, lookup,
                           query_vectors, config) -> tuple[float, dict]:
    """(the factor, what to record of the fit). ``examples``: the mined training examples;
    ``lookup`` and ``query_vectors``: as :func:`search.finetune.adapter.vector_examples` takes
    them; ``config``: the adapter's own training settings, so each fold trains as it did."""
    from bot.runtime.factories import new_retriever
    from search.adapter import AdaptedEmbedder
    from search.finetune.adapter import train_adapter, vector_examples
    from search.finetune.fusion_fit import best_factor, factor_scores, folds

    k = settings.finetune.adapter_fusion_folds
    started = time.perf_counter()
    parts = folds([e.qid for e in examples], k, settings.finetune.seed)
    sources = search_sources(args, data)
    lists: dict = {}
    retriever = None
    for n, fold in enumerate(parts):
        report(args, "fitting fusion", n, len(parts))
        held = set(fold)
        rest = [e for e in examples if e.qid not in held]
        vex = await asyncio.to_thread(vector_examples, rest, lookup, query_vectors)
        if not vex:
            continue
        adapter, _ = await asyncio.to_thread(train_adapter, vex, config=config)
        retriever = new_retriever(settings, services.index, AdaptedEmbedder(base_embedder, adapter),
                                  None)
        for qid in fold:
            if not any(g > 0 for g in data["qrels"].get(qid, {}).values()):
                continue
            query = data["queries"][qid]
            lexical, semantic = await retriever.candidate_lists(query, k=GATE_FETCH,
                                                                sources=sources)
            w = retriever.fusion_for(query)
            lists[qid] = (lexical, semantic, (w.bm25, w.dense))
    report(args, "fitting fusion", len(parts), len(parts))
    if not lists or retriever is None:
        say(args, "fusion: too few training queries to fit the dense weight; kept as configured")
        return 1.0, {}
    scores = await asyncio.to_thread(factor_scores, lists, data["qrels"], fuse=retriever.fuse,
                                     key=data["key"], fetch=GATE_FETCH)
    factor = best_factor(scores)
    seconds = time.perf_counter() - started
    table = ", ".join(f"x{f:g} {s:.4f}" for f, s in scores.items())
    say(args, f"fusion: dense weight x{factor:g}, fitted on {len(lists)} training queries, each "
         f"ranked by an adapter trained on the other {k - 1} of {k} folds (nDCG@10 by factor: "
         f"{table}; {seconds:.1f} s)")
    return factor, {"dense_factor": factor, "fusion_fit_queries": len(lists),
                    "fusion_fit_folds": k,
                    "fusion_fit_ndcg@10": {f"{f:g}": round(s, 4) for f, s in scores.items()},
                    "fusion_fit_seconds": round(seconds, 1)}

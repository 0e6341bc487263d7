"""The quality gate: rank the validation queries with the active models and with the candidate
(an embedder's candidate on a re-embedded copy of the index; a reranker's with its blend
fitted and cross-fitted), so ``bot.training.finetune`` can decide on promotion."""

from __future__ import annotations

import time
from pathlib import Path

from bot.console import CliError
from bot.training.progress import say, with_progress

GATE_METRICS = ("ndcg@10", "mrr@10", "hit@1", "hit@5", "hit@10")
# Validation ranks the top 10 documents from this many chunk hits (the reranker rescores the
# top LOREBOT_SEARCH__RERANK_DEPTH of them).
GATE_FETCH = 30


async def candidate_retriever(args, settings, services, model_dir: Path):
    """The gate ranks the whole corpus with the candidate's vectors: a copy of the index,
    re-embedded with the candidate (kept in the candidate's directory for its promotion)."""
    from bot.runtime.factories import new_embedder, new_retriever, open_index
    from bot.training.promotion import build_candidate_index
    from search.index.sqlite import SqliteIndex

    if not isinstance(services.index, SqliteIndex):
        raise CliError("the embedder gate needs the embedded (SQLite) index")
    embedder = new_embedder(settings, str(model_dir.resolve()))
    started = time.perf_counter()
    path = await with_progress(args, "re-embedding", "re-embedding the index with the candidate",
                           None, lambda tick: build_candidate_index(services.index.path, model_dir,
                                                              embedder, progress=tick))
    say(args, f"candidate index {path} ({time.perf_counter() - started:.1f} s)")
    index = open_index(settings, path, embedder_model=embedder.model_id)
    # No adapter: the active one maps the old model's query vectors (wiring drops it too).
    return new_retriever(settings, index, embedder, services.reranker,
                         default_mode=services.retriever.default_mode)


async def vector_lookup(services, embedder, examples):
    """Stored chunk vectors by chunk id: read from the SQLite index, else embedded again."""
    from search.index.sqlite import SqliteIndex

    if isinstance(services.index, SqliteIndex):
        import sqlite3

        import numpy as np

        path = services.index.path

        def lookup(ids):
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                out = {}
                for i in range(0, len(ids), 500):
                    part = ids[i: i + 500]
                    q = ",".join("?" * len(part))
                    for cid, blob in conn.execute(
                            f"SELECT chunk_id, vector FROM chunks WHERE chunk_id IN ({q})", part):
                        out[cid] = np.frombuffer(blob, dtype=np.float32)
                return out
            finally:
                conn.close()

        return lookup
    texts = {p.chunk_id: p.text for e in examples for p in (*e.positives, *e.negatives)}
    ids = [c for c in texts if c]
    vecs = await embedder.embed_documents([texts[c] for c in ids])
    table = dict(zip(ids, vecs))
    return lambda wanted: {c: table[c] for c in wanted if c in table}


async def gate_eval(args, retriever, data, sets: dict[str, list[str]], label) -> dict:
    """Each question set's metrics and per-query nDCG@10, from one evaluation of all of them:
    {set name: {"metrics": {...}, "ndcg": {qid: nDCG@10}}}."""
    per_query = await _per_query(args, retriever, data, sets, label)
    return {name: _summary(retriever.default_mode, [per_query[q] for q in qids], qids)
            for name, qids in sets.items()}


async def _per_query(args, retriever, data, sets: dict[str, list[str]], label) -> dict:
    """Per-query metrics of every question of ``sets`` ranked by ``retriever``."""
    from search.evaluation import evaluate

    every = [q for qids in sets.values() for q in qids]
    queries = {q: data["queries"][q] for q in every}
    qrels = {q: data["qrels"][q] for q in every}
    mode = retriever.default_mode
    sources = search_sources(args, data)
    phase = "validating candidate" if label.startswith("candidate") else f"validating {label}"
    result = await with_progress(args, phase, f"validating {label} ({mode})", len(queries),
                             lambda tick: evaluate(retriever, queries, qrels, [mode], depth=10,
                                                   fetch_k=GATE_FETCH, key=data["key"],
                                                   sources=sources,
                                                   progress=lambda m, d, t: tick(d, t)))
    return result.per_query[mode]


def _summary(mode: str, rows: list[dict], qids: list[str]) -> dict:
    metrics = {m: round(sum(r[m] for r in rows) / max(len(rows), 1), 4) for m in GATE_METRICS}
    return {"metrics": {"mode": mode, **metrics},
            "ndcg": {q: r["ndcg@10"] for q, r in zip(qids, rows)}}


def verdict(before: dict, after: dict, *, min_gain: float, seed: int) -> dict:
    """The gate's two questions, each a paired bootstrap on per-query nDCG@10
    (search.finetune.significance): the held-out questions must gain beyond noise, the
    document-disjoint guard must lose no more than its noise."""
    from search.finetune.significance import gains, no_harm, paired

    held = paired(before["heldout"]["ndcg"], after["heldout"]["ndcg"], seed=seed)
    guard = paired(before["guard"]["ndcg"], after["guard"]["ndcg"], seed=seed)
    out = {"heldout": {**held.as_dict(), "passed": gains(held, min_gain)},
           "guard": {**guard.as_dict(), "passed": no_harm(guard)}}
    out["passed"] = out["heldout"]["passed"] and out["guard"]["passed"]
    return out


def search_sources(args, data) -> list[str] | None:
    """A dataset is searched within its own corpus; feedback queries search everything."""
    if args.dataset is None:
        return None
    from bot.training.evaluation import _corpus_source

    return [_corpus_source(data["beir"].name)]


def random_halves(qids: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Two halves of ``qids`` by a seeded hash (the held-out queries are not split by document,
    so neither are their halves)."""
    import hashlib

    order = sorted(qids, key=lambda q: hashlib.sha256(f"{seed}:half:{q}".encode()).hexdigest())
    first = set(order[: len(order) // 2])
    return [q for q in qids if q in first], [q for q in qids if q not in first]


async def gate_reranker(args, settings, services, data, sets: dict[str, list[str]],
                        model_dir: Path):
    """The candidate reranker's gate figures (as :func:`gate_eval`) and the blend saved with it.

    The blend is fitted on the held-out questions; their own figure is cross-fitted (each random
    half ranked with the blend best on the other half), and the guard is ranked with the blend
    best on all held-out questions, so no figure grades the fitting it came from."""
    from bot.runtime.factories import new_reranker, new_retriever
    from bot.training.blend import per_blend_metrics
    from search import rerank_model

    every = [q for qids in sets.values() for q in qids]
    queries = {q: data["queries"][q] for q in every}
    qrels = {q: data["qrels"][q] for q in every}
    per_blend = await with_progress(
        args, "validating candidate", "validating candidate (rerank, every blend)", len(queries),
        lambda tick: per_blend_metrics(
            lambda reranker: new_retriever(settings, services.index, services.embedder,
                                           reranker, default_mode="rerank"),
            new_reranker(settings, str(model_dir)), queries, qrels, key=data["key"],
            sources=search_sources(args, data), fetch_k=GATE_FETCH, progress=tick))
    out, blend, (blend_a, blend_b), by = cross_fit(per_blend, sets, settings.finetune.seed,
                                                   "rerank", neutral=0.0)
    rerank_model.set_blend(model_dir, blend)
    by_blend = {f"{b:.1f}": v for b, v in by.items()}
    say(args, f"blend {blend:.1f} (held-out nDCG@10 by blend: fused order "
         f"{by_blend['0.0']:.4f}, reranker alone {by_blend['1.0']:.4f}, "
         f"{by_blend[f'{blend:.1f}']:.4f} at {blend:.1f}); the gate's held-out figure is "
         f"cross-fitted (random halves ranked with blends {blend_a:.1f} and {blend_b:.1f}), the "
         f"guard is ranked at {blend:.1f}")
    return out, {"blend": blend, "half_blends": [blend_a, blend_b],
                 "ndcg@10_by_blend": by_blend}


def cross_fit(per: dict, sets: dict[str, list[str]], seed: int, mode: str, *,
              neutral: float):
    """The gate's figures for a setting fitted on the held-out questions (a reranker's blend, an
    embedder's dense factor), without grading its own fitting: each random half of the held-out
    questions is ranked with the setting best on the other half, the guard with the one best on
    all of them. ``per[setting][qid]``: per-query metrics; ``neutral``: the setting that changes
    nothing, preferred on a tie. Returns (figures as :func:`gate_eval`'s, the setting best on
    all held-out questions, the two halves' settings, held-out nDCG@10 by setting)."""
    from bot.training.blend import best_blend

    first = next(iter(per.values()))
    held = [q for q in sets["heldout"] if q in first]
    half_a, half_b = random_halves(held, seed)
    a = best_blend(per, half_b or half_a, neutral=neutral)
    b = best_blend(per, half_a or half_b, neutral=neutral)
    best = best_blend(per, held, neutral=neutral)
    chosen = {**{q: a for q in half_a}, **{q: b for q in half_b}}
    out = {"heldout": _summary(mode, [per[chosen[q]][q] for q in held], held)}
    guard = [q for q in sets["guard"] if q in per[best]]
    out["guard"] = _summary(mode, [per[best][q] for q in guard], guard)
    by = {x: round(sum(per[x][q]["ndcg@10"] for q in held) / max(len(held), 1), 4)
          for x in sorted(per)}
    return out, best, (a, b), by


async def gate_dense_factor(args, settings, retriever, data, sets: dict[str, list[str]],
                            set_factor):
    """The candidate's gate figures (as :func:`gate_eval`) with the RRF dense weight fitted on
    the held-out questions, and what was fitted (None when the mode fuses nothing).

    For a candidate whose fitting set cannot be its training queries: a fine-tuned embedder
    learned them (and fitting out of fold would train several embedders), and an adapter over
    a fine-tuned embedder sees them through that embedder. So the factor is fitted on the
    held-out questions and cross-fitted there (:func:`cross_fit`), as a reranker's blend is.
    ``set_factor(f)`` makes the candidate fuse at ``f``; it is left at the best factor."""
    from search.finetune.fusion_fit import FACTORS

    mode = retriever.default_mode
    if mode not in ("hybrid", "rerank"):  # nothing is fused: the factor would change nothing
        return await gate_eval(args, retriever, data, sets, "candidate"), None
    per = {}
    with retriever.reusing_candidates():  # only the fusion changes from one factor to the next
        for factor in FACTORS:
            set_factor(factor)
            per[factor] = await _per_query(args, retriever, data, sets,
                                           f"candidate, dense x{factor:g}")
    out, best, (a, b), by = cross_fit(per, sets, settings.finetune.seed, mode, neutral=1.0)
    set_factor(best)
    say(args, f"fusion: dense weight x{best:g} (held-out nDCG@10 by factor: "
         + ", ".join(f"x{x:g} {v:.4f}" for x, v in by.items())
         + f"); the gate's held-out figure is cross-fitted (random halves ranked at x{a:g} and "
         f"x{b:g}), the guard is ranked at x{best:g}")
    return out, {"dense_factor": best, "fitted_on": "held-out questions", "half_factors": [a, b],
                 "ndcg@10_by_factor": {f"{x:g}": v for x, v in by.items()}}

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
    from search.evaluation import evaluate

    every = [q for qids in sets.values() for q in qids]
    queries = {q: data["queries"][q] for q in every}
    qrels = {q: data["qrels"][q] for q in every}
    mode = retriever.default_mode
    sources = search_sources(args, data)
    result = await with_progress(args, f"validating {label}", f"validating {label} ({mode})",
                             len(queries),
                             lambda tick: evaluate(retriever, queries, qrels, [mode], depth=10,
                                                   fetch_k=GATE_FETCH, key=data["key"],
                                                   sources=sources,
                                                   progress=lambda m, d, t: tick(d, t)))
    per_query = result.per_query[mode]
    return {name: _summary(mode, [per_query[q] for q in qids], qids)
            for name, qids in sets.items()}


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
    from bot.training.blend import BLENDS, best_blend, per_blend_metrics
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
    held = [q for q in sets["heldout"] if q in per_blend[BLENDS[0]]]
    half_a, half_b = random_halves(held, settings.finetune.seed)
    blend_a = best_blend(per_blend, half_b or half_a)
    blend_b = best_blend(per_blend, half_a or half_b)
    blend = best_blend(per_blend, held)
    rerank_model.set_blend(model_dir, blend)
    chosen = {**{q: blend_a for q in half_a}, **{q: blend_b for q in half_b}}
    out = {"heldout": _summary("rerank", [per_blend[chosen[q]][q] for q in held], held)}
    guard = [q for q in sets["guard"] if q in per_blend[blend]]
    out["guard"] = _summary("rerank", [per_blend[blend][q] for q in guard], guard)
    by_blend = {f"{b:.1f}": round(sum(per_blend[b][q]["ndcg@10"] for q in held)
                                  / max(len(held), 1), 4) for b in BLENDS}
    say(args, f"blend {blend:.1f} (held-out nDCG@10 by blend: fused order "
         f"{by_blend['0.0']:.4f}, reranker alone {by_blend['1.0']:.4f}, "
         f"{by_blend[f'{blend:.1f}']:.4f} at {blend:.1f}); the gate's held-out figure is "
         f"cross-fitted (random halves ranked with blends {blend_a:.1f} and {blend_b:.1f}), the "
         f"guard is ranked at {blend:.1f}")
    return out, {"blend": blend, "half_blends": [blend_a, blend_b],
                 "ndcg@10_by_blend": by_blend}

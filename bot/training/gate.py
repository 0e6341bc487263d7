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


async def gate_eval(args, retriever, data, val_q, label) -> dict:
    from search.evaluation import evaluate

    queries = {q: data["queries"][q] for q in val_q}
    qrels = {q: data["qrels"][q] for q in val_q}
    mode = retriever.default_mode
    sources = _sources(args, data)
    result = await with_progress(args, f"validating {label}", f"validating {label} ({mode})",
                             len(queries),
                             lambda tick: evaluate(retriever, queries, qrels, [mode], depth=10,
                                                   fetch_k=GATE_FETCH, key=data["key"],
                                                   sources=sources,
                                                   progress=lambda m, d, t: tick(d, t)))
    scores = result.results[mode]
    return {"mode": mode, **{m: round(scores[m], 4) for m in GATE_METRICS}}


def _sources(args, data) -> list[str] | None:
    """A dataset is searched within its own corpus; feedback queries search everything."""
    if args.dataset is None:
        return None
    from bot.training.evaluation import _corpus_source

    return [_corpus_source(data["beir"].name)]


async def gate_reranker(args, settings, services, data, val_q, model_dir: Path):
    """The candidate reranker's validation metrics, cross-fitted over its blend
    (bot.training.blend), and the blend saved with it: (metrics, blend figures)."""
    from bot.runtime.factories import new_reranker, new_retriever
    from bot.training.blend import BLENDS, best_blend, cross_fitted, per_blend_metrics
    from search import rerank_model
    from search.finetune.data import split_by_document

    queries = {q: data["queries"][q] for q in val_q}
    qrels = {q: data["qrels"][q] for q in val_q}
    per_blend = await with_progress(
        args, "validating candidate", "validating candidate (rerank, every blend)", len(queries),
        lambda tick: per_blend_metrics(
            lambda reranker: new_retriever(settings, services.index, services.embedder,
                                           reranker, default_mode="rerank"),
            new_reranker(settings, str(model_dir)), queries, qrels, key=data["key"],
            sources=_sources(args, data), fetch_k=GATE_FETCH, progress=tick))
    judged = list(per_blend[BLENDS[0]])
    halves = split_by_document({q: qrels[q] for q in judged}, val_fraction=0.5,
                               seed=settings.finetune.seed)
    after, half_blends = cross_fitted(per_blend, (halves.train, halves.validation),
                                      GATE_METRICS)
    blend = best_blend(per_blend, judged)
    rerank_model.set_blend(model_dir, blend)
    by_blend = {f"{b:.1f}": round(sum(per_blend[b][q]["ndcg@10"] for q in judged)
                                  / len(judged), 4) for b in BLENDS}
    say(args, f"blend {blend:.1f} (validation nDCG@10 by blend: fused order "
         f"{by_blend['0.0']:.4f}, reranker alone {by_blend['1.0']:.4f}, "
         f"{by_blend[f'{blend:.1f}']:.4f} at {blend:.1f}); the gate's figure is cross-fitted "
         f"(halves ranked with blends {half_blends[0]:.1f} and {half_blends[1]:.1f})")
    return ({"mode": "rerank", **{m: round(after[m], 4) for m in GATE_METRICS}},
            {"blend": blend, "half_blends": list(half_blends), "ndcg@10_by_blend": by_blend})

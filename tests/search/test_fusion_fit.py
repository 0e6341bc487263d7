"""The RRF dense weight fitted with a query adapter (search.finetune.fusion_fit), and the retriever
applying it while the adapter is in use (search.adapter, search.retriever)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from search.adapter import ADAPTER_FILE, AdaptedEmbedder, QueryAdapter
from search.errors import ModelError
from search.finetune.fusion_fit import FACTORS, best_factor, factor_scores, folds
from search.fusion import reciprocal_rank_fusion
from search.models import Hit
from search.retriever import Retriever


def _hit(doc: str) -> Hit:
    return Hit(chunk_id=f"{doc}#0", doc_id=doc, source="s", title=doc, text=doc, score=1.0)


def _fuse(lexical, semantic, weights):
    return reciprocal_rank_fusion([lexical, semantic], k=60, weights=weights)


def test_folds_split_every_query_once_and_do_not_depend_on_order():
    qids = [f"q{i}" for i in range(23)]
    parts = folds(qids, 5, seed=13)
    assert len(parts) == 5 and sorted(q for p in parts for q in p) == sorted(qids)
    assert {len(p) for p in parts} <= {4, 5}
    assert folds(list(reversed(qids)), 5, seed=13) == parts
    assert folds(qids, 5, seed=14) != parts
    with pytest.raises(ValueError):
        folds(qids, 1, seed=13)


def _lists(right: str, n: int = 12):
    """Per query: the relevant document is first in one list (``right``: "dense" or "bm25") and
    absent from the other, whose documents are all different."""
    out, qrels = {}, {}
    for i in range(n):
        rel = f"rel{i}"
        found = [_hit(rel), *(_hit(f"a{i}-{j}") for j in range(5))]
        missed = [_hit(f"b{i}-{j}") for j in range(6)]
        lexical, semantic = (found, missed) if right == "bm25" else (missed, found)
        out[f"q{i}"] = (lexical, semantic, (1.0, 1.0))
        qrels[f"q{i}"] = {rel: 1}
    return out, qrels


def test_a_better_dense_list_earns_more_weight_and_a_worse_one_none():
    key = lambda h: h.doc_id  # noqa: E731
    # Equal weights tie the two lists' first documents, and a tie keeps BM25's first.
    lists, qrels = _lists("dense")
    scores = factor_scores(lists, qrels, fuse=_fuse, key=key)
    assert set(scores) == set(FACTORS)
    assert scores[1.0] < 1.0 and scores[1.25] == scores[3.0] == 1.0
    assert best_factor(scores) == 1.25  # the best, nearest the configured weights
    lists, qrels = _lists("bm25")
    scores = factor_scores(lists, qrels, fuse=_fuse, key=key)
    assert scores[0.5] == scores[1.0] == 1.0 and scores[2.0] < 1.0
    assert best_factor(scores) == 1.0


def test_factor_scores_use_the_weights_each_query_was_given():
    """A query whose dense weight is already 0 (a script the embedder does not know) stays at 0
    whatever the factor: the factor multiplies, it does not replace."""
    lists, qrels = _lists("dense", n=3)
    lists = {q: (lex, sem, (1.0, 0.0)) for q, (lex, sem, _w) in lists.items()}
    scores = factor_scores(lists, qrels, fuse=_fuse, key=lambda h: h.doc_id)
    assert len(set(scores.values())) == 1


def test_ties_keep_the_configured_weights():
    assert best_factor({0.5: 0.7, 1.0: 0.7, 2.0: 0.7}) == 1.0
    assert best_factor({0.5: 0.7, 1.0: 0.6, 1.5: 0.7}) == 0.5  # equally far: the smaller
    assert best_factor({1.0: 0.6, 2.0: 0.61, 3.0: 0.605}) == 2.0
    with pytest.raises(ValueError):
        factor_scores({}, {}, fuse=_fuse, key=lambda h: h.doc_id)


def test_an_adapter_keeps_its_factor_and_an_older_one_loads_at_the_configured_weights(tmp_path):
    dim = 4
    adapter = QueryAdapter(np.zeros((dim, dim), np.float32), np.zeros(dim, np.float32), 2.0)
    adapter.save(tmp_path / "new")
    assert QueryAdapter.load(tmp_path / "new").dense_factor == 2.0
    (tmp_path / "old").mkdir()
    np.savez(tmp_path / "old" / ADAPTER_FILE, weight=np.zeros((dim, dim), np.float32),
             bias=np.zeros(dim, np.float32))
    assert QueryAdapter.load(tmp_path / "old").dense_factor == 1.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ModelError, match="dense factor"):
            QueryAdapter(np.zeros((dim, dim), np.float32), np.zeros(dim, np.float32), bad)


class _ListsIndex:
    """BM25 has the wrong document first; k-NN has the right one first."""

    async def bm25(self, query, k, sources=None):
        return [_hit("wrong"), _hit("x1"), _hit("x2"), _hit("right")]

    async def knn(self, vector, k, sources=None):
        return [_hit("right"), _hit("x3"), _hit("x4"), _hit("wrong")]


async def test_the_retriever_fuses_with_the_factor_of_the_adapter_in_use():
    inner = SimpleNamespace(model_id="all-MiniLM-L6-v2")

    async def embed_query(text):
        return np.ones(4, np.float32) / 2

    inner.embed_query = embed_query
    adapter = QueryAdapter(np.zeros((4, 4), np.float32), np.zeros(4, np.float32), 2.0)
    plain = Retriever(_ListsIndex(), inner, dense_weight=0.8)
    adapted = Retriever(_ListsIndex(), AdaptedEmbedder(inner, adapter), dense_weight=0.8)
    assert plain.fusion_for("q").dense == pytest.approx(0.8)
    w = adapted.fusion_for("q")
    assert w.dense == pytest.approx(1.6) and "dense x2, fitted with the fine-tuned models in use" in w.reason
    # At 0.8 BM25's first document wins the fusion; at the adapter's 1.6, the k-NN's.
    assert (await plain.search("q", mode="hybrid", k=1))[0].doc_id == "wrong"
    assert (await adapted.search("q", mode="hybrid", k=1))[0].doc_id == "right"
    # A rollback (the base embedder back) drops the factor with the adapter.
    adapted.use_models(inner, None)
    assert adapted.fusion_for("q").dense == pytest.approx(0.8)
    fixed = Retriever(_ListsIndex(), AdaptedEmbedder(inner, adapter), language_aware=False)
    assert fixed.fusion_for("q").dense == pytest.approx(2.0)
    lexical, semantic = await adapted.candidate_lists("q", k=3)
    assert adapted.fuse(lexical, semantic, (1.0, 2.0))[0].doc_id == "right"


async def test_passes_that_differ_only_in_the_dense_weight_search_each_query_once():
    """gate_dense_factor ranks the held-out questions at 8 weights: within
    reusing_candidates the index and the embedder are asked once per query, and every pass still
    fuses at its own weight."""
    calls = []

    class Counting(_ListsIndex):
        async def bm25(self, query, k, sources=None):
            calls.append(("bm25", query, tuple(sources or ())))
            return await super().bm25(query, k, sources)

        async def knn(self, vector, k, sources=None):
            calls.append(("knn", tuple(sources or ())))
            return await super().knn(vector, k, sources)

    embedder = SimpleNamespace(model_id="all-MiniLM-L6-v2", dense_factor=1.0)

    async def embed_query(text):
        calls.append(("embed", text))
        return np.ones(4, np.float32) / 2

    embedder.embed_query = embed_query
    retriever = Retriever(Counting(), embedder, dense_weight=0.8, language_aware=False)
    firsts = []
    with retriever.reusing_candidates():
        for factor in (1.0, 2.0):
            embedder.dense_factor = factor
            for sources in (["a"], ["b"]):
                firsts.append((await retriever.search("q", mode="hybrid", k=1,
                                                      sources=sources))[0].doc_id)
        assert firsts == ["wrong", "wrong", "right", "right"]
        # Once per query and sources: a search within other sources is its own.
        assert sorted(c[0] for c in calls) == ["bm25", "bm25", "embed", "embed", "knn", "knn"]
        calls.clear()
        retriever.use_models(embedder, None)  # another model: its vectors, searched again
        await retriever.search("q", mode="hybrid", k=1, sources=["a"])
        assert len(calls) == 3
    calls.clear()
    await retriever.search("q", mode="hybrid", k=1, sources=["a"])
    assert len(calls) == 3  # outside the block every search asks again


def test_a_saved_factor_is_read_back_and_anything_else_means_the_configured_weights(tmp_path,
                                                                                   caplog):
    from search.fusion_weights import FACTOR_FILE, save_dense_factor, saved_dense_factor

    save_dense_factor(tmp_path, 1.5, fitted_on="held-out questions")
    assert saved_dense_factor(str(tmp_path)) == 1.5
    assert saved_dense_factor("all-MiniLM-L6-v2") == 1.0  # a model name, not a directory
    for bad in ("{", '{"dense_factor": "x"}', '{"dense_factor": -2}', '{"dense_factor": NaN}',
                "[]"):
        (tmp_path / FACTOR_FILE).write_text(bad)
        caplog.clear()
        assert saved_dense_factor(str(tmp_path)) == 1.0
        assert f"ignoring {tmp_path / FACTOR_FILE}" in caplog.text  # said, not silent


def test_the_embedder_factory_attaches_the_saved_factor_and_an_adapter_multiplies_it(tmp_path):
    from bot.runtime.factories import new_embedder
    from bot.settings import Settings
    from search.fusion_weights import save_dense_factor

    settings = Settings(_env_file=None)
    save_dense_factor(tmp_path, 1.5)
    tuned = new_embedder(settings, str(tmp_path))  # not loaded: the factor is read at once
    assert tuned.dense_factor == 1.5
    assert new_embedder(settings, "all-MiniLM-L6-v2").dense_factor == 1.0
    adapter = QueryAdapter(np.zeros((4, 4), np.float32), np.zeros(4, np.float32), 2.0)
    assert AdaptedEmbedder(tuned, adapter).dense_factor == 3.0
    assert Retriever(_ListsIndex(), AdaptedEmbedder(tuned, adapter)).fusion_for("q").dense == 3.0


def test_cross_fit_ranks_each_half_with_the_setting_best_on_the_other():
    from bot.training.gate import cross_fit, random_halves

    held = [f"h{i}" for i in range(8)]
    a, b = random_halves(held, 13)
    # Setting 2.0 is perfect on half a and useless on half b; 1.0 (neutral) is middling on both.
    per = {1.0: {q: {"ndcg@10": 0.5} for q in held},
           2.0: {q: {"ndcg@10": 1.0 if q in a else 0.0} for q in held}}
    for q in held:
        for m in ("mrr@10", "hit@1", "hit@5", "hit@10"):
            per[1.0][q][m] = per[2.0][q][m] = 0.0
    per[1.0]["g"] = per[2.0]["g"] = {"ndcg@10": 0.3, "mrr@10": 0, "hit@1": 0, "hit@5": 0,
                                      "hit@10": 0}
    out, best, (fit_a, fit_b), by = cross_fit(per, {"heldout": held, "guard": ["g"]}, 13,
                                              "hybrid", neutral=1.0)
    # On all held-out questions both score 0.5: the tie goes to the neutral setting ...
    assert best == 1.0 and by == {1.0: 0.5, 2.0: 0.5}
    # ... half a is ranked with what half b prefers (1.0), half b with what half a prefers (2.0):
    # the figure does not reward 2.0 for fitting half a.
    assert (fit_a, fit_b) == (1.0, 2.0)
    assert out["heldout"]["metrics"]["ndcg@10"] == 0.25
    assert out["guard"]["ndcg"] == {"g": 0.3}

"""The reranker's blend with the fused order: the ordering rule, fitting it on validation
queries with a cross-fitted gate figure, and a trained model carrying its blend (issue 8)."""

from __future__ import annotations

import pytest

from bot.training.blend import BLENDS, best_blend, cross_fitted, per_blend_metrics
from search.models import Hit
from search.rerank import blended_order, rescored


def _hits(query: str, n: int = 5) -> list[Hit]:
    return [Hit(chunk_id=f"{query}-{i}#0", doc_id=f"{query}-{i}", source="s", title="",
                text=f"passage {i} for {query}", score=1.0 / (i + 1)) for i in range(n)]


def test_blend_zero_keeps_the_fused_order_one_follows_the_scores():
    scores = [0.1, 0.9, 0.5, 0.3]
    fused = [0.040, 0.035, 0.030, 0.010]
    assert blended_order(scores, fused, 0.0) == [0, 1, 2, 3]
    assert blended_order(scores, fused, 1.0) == [1, 2, 3, 0]
    # Halfway: the reranker's favourite passes the fused first; the third, much further ahead in
    # fused score than the fourth, keeps its lead over a slightly better reranker score.
    assert blended_order([0.1, 0.9, 0.12, 0.3], fused, 0.5) == [1, 0, 2, 3]
    # The fused score's gaps count, not just the places: with the first far ahead, it stays
    # (blending with the place alone, 1, 2/3, 1/3, 0, would have put the second first).
    assert blended_order([0.1, 0.9, 0.5, 0.3], [0.09, 0.02, 0.015, 0.01], 0.4) == [0, 1, 2, 3]
    assert blended_order([0.1, 0.9, 0.5, 0.3], [0.04, 0.03, 0.02, 0.01], 0.4) == [1, 0, 2, 3]
    assert blended_order([0.5, 0.5, 0.5], [0.3, 0.2, 0.1], 0.7) == [0, 1, 2]  # ties: fused
    assert blended_order([0.2], [0.1], 0.3) == [0] and blended_order([], [], 0.3) == []


def test_rescored_hits_carry_the_reranker_score_in_the_blended_order():
    hits = _hits("q", 3)
    out = rescored(hits, [0.2, 0.8, 0.5], 1.0)
    assert [h.doc_id for h in out] == ["q-1", "q-2", "q-0"]
    assert [h.score for h in out] == [0.8, 0.5, 0.2]
    assert [h.score for h in hits] == [1.0, 0.5, 1 / 3]  # the inputs are untouched


class ScriptedScorer:
    """A reranker's scoring side that scores by a rule, and counts its calls."""

    def __init__(self, rule):
        self.rule = rule
        self.calls = 0

    def scores(self, query, passages):
        self.calls += 1
        return [self.rule(query, p) for p in passages]


class FixedRetriever:
    """Fused candidates given per query; the reranker rescores them, as Retriever does."""

    def __init__(self, reranker, fused):
        self.reranker, self.fused = reranker, fused
        self.default_mode = "rerank"

    async def search(self, query, *, mode=None, k=10, sources=None):
        return (await self.reranker.rerank(query, self.fused[query]))[:k]


QUERIES = {f"q{i}": f"question {i}" for i in range(6)}


def _mean(per_query, metric="ndcg@10"):
    return sum(r[metric] for r in per_query.values()) / len(per_query)


async def test_a_reranker_that_knows_better_gets_weight_a_wrong_one_gets_none():
    fused = {text: _hits(qid) for qid, text in QUERIES.items()}
    # The relevant document sits third in the fused order of every query.
    qrels = {qid: {f"{qid}-2": 1} for qid in QUERIES}

    def retriever_for(reranker):
        return FixedRetriever(reranker, fused)

    right = ScriptedScorer(lambda q, p: 1.0 if p.startswith("passage 2 ") else 0.1)
    per_blend = await per_blend_metrics(retriever_for, right, QUERIES, qrels,
                                        key=lambda h: h.doc_id, sources=None, fetch_k=10)
    assert set(per_blend) == set(BLENDS) and set(per_blend[0.0]) == set(QUERIES)
    table = {b: _mean(per_blend[b]) for b in BLENDS}
    assert table[0.0] < table[1.0] == 1.0
    blend = best_blend(per_blend, list(QUERIES))
    assert 0.0 < blend < 1.0 and table[blend] == 1.0  # the smallest weight that ranks it first
    assert all(table[b] < 1.0 for b in BLENDS if b < blend)
    assert right.calls == len(QUERIES)  # scored once per query, whatever the blends tried

    # Relevant first in the fused order; the reranker puts it last: keep the fused order.
    qrels = {qid: {f"{qid}-0": 1} for qid in QUERIES}
    wrong = ScriptedScorer(lambda q, p: 0.0 if p.startswith("passage 0 ") else 0.9)
    per_blend = await per_blend_metrics(retriever_for, wrong, QUERIES, qrels,
                                        key=lambda h: h.doc_id, sources=None, fetch_k=10)
    assert best_blend(per_blend, list(QUERIES)) == 0.0
    assert _mean(per_blend[0.0]) == 1.0 > _mean(per_blend[1.0])


def test_the_gate_figure_ranks_each_half_with_the_blend_fitted_on_the_other():
    # Half A is best served by the fused order, half B by the reranker alone: fitted on all
    # queries a blend would look good on both, but each half only gets the other's choice.
    a, b = ["a1", "a2"], ["b1", "b2"]

    def row(ndcg):
        return {"ndcg@10": ndcg, "hit@1": float(ndcg == 1.0)}

    per_blend = {
        blend: {**{q: row(1.0 if blend == 0.0 else 0.5) for q in a},
                **{q: row(1.0 if blend == 1.0 else 0.2) for q in b}}
        for blend in BLENDS
    }
    metrics, (blend_a, blend_b) = cross_fitted(per_blend, (a, b), ["ndcg@10", "hit@1"])
    assert (blend_a, blend_b) == (1.0, 0.0)  # A ranked with B's best, B with A's
    assert metrics == {"ndcg@10": (0.5 + 0.5 + 0.2 + 0.2) / 4, "hit@1": 0.0}
    # In-sample, the best single blend would have claimed more than the cross-fitted figure.
    best = best_blend(per_blend, a + b)
    assert best == 1.0 and _mean(per_blend[best]) == (0.5 + 0.5 + 1.0 + 1.0) / 4
    # One half empty (too few validation queries to split): the other half's best is used.
    metrics, blends = cross_fitted(per_blend, (a, []), ["ndcg@10"])
    assert blends == (0.0, 0.0) and metrics == {"ndcg@10": 1.0}


@pytest.mark.slow
def test_a_trained_reranker_loads_with_the_blend_saved_for_it(tmp_path):
    from search import rerank_model
    from search.finetune.data import Example, Passage
    from search.finetune.reranker import RerankerTraining, train_reranker
    from search.rerank import CrossEncoderReranker

    examples = [Example("q1", "Which port does the VPN use?", {"vpn"},
                        [Passage("vpn", "The VPN listens on UDP port 1194.")],
                        [Passage("lunch", "Lunch is served in the canteen from noon.")])]
    out = tmp_path / "rr"
    train_reranker(examples, out, base_model="all-MiniLM-L6-v2",
                   config=RerankerTraining(max_steps=1, layers=1))
    assert CrossEncoderReranker(str(out)).blend == 1.0
    rerank_model.set_blend(out, 0.3)
    assert CrossEncoderReranker(str(out)).blend == 0.3
    with pytest.raises(ValueError, match="within 0..1"):
        rerank_model.set_blend(out, 1.5)
    # Training on from a saved reranker keeps its head (scale and bias), not a fresh one.
    cfg = rerank_model.load_config(out)
    again = rerank_model.build(out)
    assert float(again.scale.detach()) == pytest.approx(cfg["scale"])
    assert float(again.bias.detach()) == pytest.approx(cfg["bias"])


@pytest.mark.slow
async def test_finetune_reranker_saves_the_blend_and_gates_on_the_cross_fitted_figure(
    data_dir, tiny_beir, monkeypatch, capsys
):
    import json
    from types import SimpleNamespace

    from bot.cli.finetune import run_finetune
    from bot.settings import Settings
    from bot.runtime.factories import model_registry
    from search import rerank_model

    monkeypatch.setenv("LOREBOT_FINETUNE__VAL_FRACTION", "0.5")  # 4 of 8 for the guard
    monkeypatch.setenv("LOREBOT_FINETUNE__HELDOUT_FRACTION", "0.5")  # 2 of the rest held out
    settings = Settings(_env_file=None)
    args = SimpleNamespace(kind="reranker", dataset=tiny_beir, split="train", epochs=1,
                           max_steps=1, force=False, json=True)
    assert await run_finetune(args, settings) == 0
    out = json.loads(capsys.readouterr().out)
    registry = model_registry(settings)
    cand = registry.get(out["candidate"])
    blend = cand.metrics["blend"]
    assert out["after"]["mode"] == "rerank" and cand.metrics["validation_queries"] == 2
    assert cand.metrics["guard_queries"] == 4 and out["gate"]["guard"]["n"] == 4
    assert set(blend["ndcg@10_by_blend"]) == {f"{b:.1f}" for b in BLENDS}
    # The saved blend is the best on all held-out queries; the fused order (blend 0) is the
    # active retriever's ranking, so its figure is the gate's "before".
    by_blend = blend["ndcg@10_by_blend"]
    assert by_blend[f"{blend['blend']:.1f}"] == max(by_blend.values())
    assert by_blend["0.0"] == out["before"]["ndcg@10"]
    assert rerank_model.load_config(registry.path(cand.id))["blend"] == blend["blend"]
    assert len(blend["half_blends"]) == 2


def test_score_calibration_fits_the_chance_of_relevance():
    import numpy as np

    from search.rerank_model import fit_logistic

    rng = np.random.default_rng(0)
    # Relevant pairs' cosines sit higher; one relevant pair in five, as in training groups.
    x = np.concatenate([rng.normal(0.8, 0.05, 200), rng.normal(0.6, 0.05, 800)])
    y = np.concatenate([np.ones(200), np.zeros(800)])
    a, b = fit_logistic(x, y)
    p = 1 / (1 + np.exp(-(a * x + b)))
    assert a > 0
    assert abs(p.mean() - 0.2) < 0.01  # the fitted chances add up to the share of relevant pairs
    assert p[:200].mean() > 0.8 and p[200:].mean() < 0.1
    assert 1 / (1 + np.exp(-(a * 0.3 + b))) < 0.01  # far below both: surely not relevant
    assert fit_logistic(x, np.zeros_like(x)) is None  # one class: nothing to fit
    assert fit_logistic(-x, y) is None  # relevant pairs scored lower: no usable fit

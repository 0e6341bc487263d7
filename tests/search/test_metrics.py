"""Ranking metrics: hand-computed cases, edge cases, and agreement with ranx and pytrec_eval."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from search.evaluation.metrics import (
    has_relevant,
    hit_at_k,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    parse_metric,
    percentile,
    recall_at_k,
    score_query,
    top_k,
)

QRELS = {"a": 3, "b": 2, "c": 1, "x": 0}
RANKING = ["b", "x", "a", "z"]


# --- hand-computed ------------------------------------------------------------------------------


def test_ndcg_graded_by_hand():
    # top 3 = b (grade 2), x (0), a (3)
    # DCG@3  = 2/log2(2) + 0/log2(3) + 3/log2(4)          = 2 + 0 + 1.5           = 3.5
    # IDCG@3 = 3/log2(2) + 2/log2(3) + 1/log2(4)  (a, b, c) = 3 + 1.26186 + 0.5     = 4.76186
    # nDCG@3 = 3.5 / 4.76186                                                        = 0.73501
    expected = 3.5 / (3 + 2 / math.log2(3) + 0.5)
    assert ndcg_at_k(RANKING, QRELS, 3) == pytest.approx(expected, abs=1e-12)
    assert ndcg_at_k(RANKING, QRELS, 3) == pytest.approx(0.73501, abs=1e-5)


def test_ndcg_perfect_and_cut_ideal():
    # The ideal ranking is a, b, c; cutting at 1 compares 3/1 with the ideal 3/1.
    assert ndcg_at_k(["a", "b", "c"], QRELS, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["a"], QRELS, 1) == pytest.approx(1.0)
    # b first at k=1: DCG = 2, IDCG@1 = 3 -> 2/3
    assert ndcg_at_k(["b", "a"], QRELS, 1) == pytest.approx(2 / 3)


def test_recall_by_hand():
    # 3 relevant (a, b, c; x has grade 0). Top 3 holds b and a -> 2/3; top 2 holds b -> 1/3.
    assert recall_at_k(RANKING, QRELS, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKING, QRELS, 2) == pytest.approx(1 / 3)


def test_mrr_and_hit_by_hand():
    # b is relevant and first -> 1/1
    assert mrr_at_k(RANKING, QRELS, 10) == 1.0
    # x (grade 0) and z (unjudged) are not relevant; c at rank 3 -> 1/3
    assert mrr_at_k(["x", "z", "c"], QRELS, 10) == pytest.approx(1 / 3)
    # ... but outside a cutoff of 2 -> 0
    assert mrr_at_k(["x", "z", "c"], QRELS, 2) == 0.0
    assert hit_at_k(["x", "a"], QRELS, 1) == 0.0
    assert hit_at_k(["x", "a"], QRELS, 2) == 1.0


def test_negative_grades_are_not_relevant():
    # a has grade -1: gain 0 (not -1), and it does not count for recall or MRR.
    # DCG = 0/log2(2) + 1/log2(3) = 0.63093; IDCG = 1/log2(2) = 1
    qrels = {"a": -1, "b": 1}
    assert ndcg_at_k(["a", "b"], qrels, 10) == pytest.approx(1 / math.log2(3))
    assert recall_at_k(["a"], qrels, 10) == 0.0
    assert mrr_at_k(["a", "b"], qrels, 10) == 0.5


# --- edge cases ---------------------------------------------------------------------------------


def test_no_relevant_retrieved_scores_zero():
    ranking = ["x", "y", "z"]
    assert ndcg_at_k(ranking, QRELS, 10) == 0.0
    assert recall_at_k(ranking, QRELS, 10) == 0.0
    assert mrr_at_k(ranking, QRELS, 10) == 0.0
    assert hit_at_k(ranking, QRELS, 10) == 0.0
    assert ndcg_at_k([], QRELS, 10) == 0.0


def test_fewer_results_than_k():
    # Only c retrieved, of relevant c and d, k = 10.
    # DCG = 1/log2(2) = 1; IDCG = 1 + 1/log2(3) = 1.63093 -> 0.61315; recall 1/2
    qrels = {"c": 1, "d": 1}
    assert ndcg_at_k(["c"], qrels, 10) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert recall_at_k(["c"], qrels, 10) == 0.5
    assert mrr_at_k(["c"], qrels, 10) == 1.0


def test_duplicate_ids_count_once():
    qrels = {"a": 1, "b": 1}
    # Without dedupe the top 2 would be a, a: DCG 1 + 1/log2(3) > IDCG and nDCG > 1.
    # Deduped, the top 2 is a, b: DCG = IDCG -> 1.0; recall 2/2.
    assert top_k(["a", "a", "b"], 2) == ["a", "b"]
    assert ndcg_at_k(["a", "a", "b"], qrels, 2) == pytest.approx(1.0)
    assert recall_at_k(["a", "a", "a"], qrels, 10) == 0.5
    # A repeated non-relevant id does not push a relevant one down: x, a -> 1/2
    assert mrr_at_k(["x", "x", "a"], qrels, 2) == 0.5


def test_query_without_relevant_judgement():
    qrels = {"x": 0}
    assert not has_relevant(qrels)
    assert ndcg_at_k(["x"], qrels, 10) == 0.0
    assert recall_at_k(["x"], qrels, 10) == 0.0


def test_bad_k_and_metric_names():
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k, hit_at_k):
        with pytest.raises(ValueError, match="k must be at least 1"):
            metric(["a"], {"b": 0}, 0)
    for bad in ("ndcg", "ndcg@", "ndcg@0", "map@10", "recall@x"):
        with pytest.raises(ValueError, match="unknown metric"):
            parse_metric(bad)
    assert parse_metric("recall@100") == (recall_at_k, 100)


def test_mean_metrics_excludes_unjudgeable_and_zeroes_missing():
    qrels = {
        "q1": {"a": 1},  # ranked first -> ndcg 1, hit 1
        "q2": {"b": 1},  # missing from the run -> 0
        "q3": {"c": 0},  # nothing relevant -> left out of the mean
    }
    run = {"q1": ["a"], "q3": ["c"]}
    means, n = mean_metrics(run, qrels, ["ndcg@10", "hit@1"])
    assert n == 2
    assert means == {"ndcg@10": 0.5, "hit@1": 0.5}  # (1 + 0) / 2


def test_mean_metrics_of_nothing_is_nan():
    means, n = mean_metrics({}, {"q": {"a": 0}}, ["ndcg@10"])
    assert n == 0 and math.isnan(means["ndcg@10"])


def test_percentile():
    # [10, 20, 30, 40]: p50 at position 1.5 -> 25; p95 at 2.85 -> 30 + 0.85 * 10 = 38.5
    assert percentile([40, 10, 30, 20], 50) == 25
    assert percentile([40, 10, 30, 20], 95) == pytest.approx(38.5)
    assert percentile([7.0], 95) == 7.0
    values = [random.Random(i).expovariate(0.1) for i in range(57)]
    for q in (0, 5, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-9)
    with pytest.raises(ValueError):
        percentile([], 50)


# --- agreement with the reference implementations -----------------------------------------------


def _random_benchmark(seed: int, n_queries: int = 50, pool: int = 300):
    """Graded qrels (some grade 0) and rankings of 1..150 distinct documents per query."""
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(pool)]
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 12))
        grades = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        grades[judged[0]] = rng.randint(1, 3)  # at least one relevant, so every query counts
        qrels[qid] = grades
        # Bias rankings towards judged documents so the metrics are not all near zero.
        candidates = judged + rng.sample(docs, 60)
        rng.shuffle(candidates)
        ranking = list(dict.fromkeys(candidates))[: rng.randint(1, 150)]
        run[qid] = ranking
    return qrels, run


def _scored(run: dict[str, list[str]], cut: int | None = None) -> dict[str, dict[str, float]]:
    # Distinct descending scores: both libraries sort by score, so ties would reorder documents.
    return {q: {d: float(len(r) - i) for i, d in enumerate(r[:cut])} for q, r in run.items()}


METRIC_NAMES = ["ndcg@10", "recall@100", "mrr@10", "hit@1", "hit@5", "hit@10"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pytrec_eval(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = _random_benchmark(seed)
    evaluator = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut.10", "recall.100", "success.1,5,10"}
    )
    ref = evaluator.evaluate(_scored(run))
    # trec_eval's recip_rank has no cutoff: MRR@10 is recip_rank over the top 10.
    ref_mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(_scored(run, 10))
    for qid, ranking in run.items():
        ours = score_query(ranking, qrels[qid], METRIC_NAMES)
        assert ours["ndcg@10"] == pytest.approx(ref[qid]["ndcg_cut_10"], abs=1e-6)
        assert ours["recall@100"] == pytest.approx(ref[qid]["recall_100"], abs=1e-6)
        assert ours["mrr@10"] == pytest.approx(ref_mrr[qid]["recip_rank"], abs=1e-6)
        for k in (1, 5, 10):
            assert ours[f"hit@{k}"] == pytest.approx(ref[qid][f"success_{k}"], abs=1e-6)
    means, n = mean_metrics(run, qrels, ["ndcg@10"])
    assert n == len(qrels)
    ref_mean = sum(r["ndcg_cut_10"] for r in ref.values()) / len(ref)
    assert means["ndcg@10"] == pytest.approx(ref_mean, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_ranx(seed):
    ranx = pytest.importorskip("ranx")
    qrels, run = _random_benchmark(seed)
    ranx_names = {
        "ndcg@10": "ndcg@10", "recall@100": "recall@100", "mrr@10": "mrr@10",
        "hit@1": "hit_rate@1", "hit@5": "hit_rate@5", "hit@10": "hit_rate@10",
    }
    ref = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(_scored(run)), list(ranx_names.values()))
    means, _ = mean_metrics(run, qrels, METRIC_NAMES)
    for ours, theirs in ranx_names.items():
        assert means[ours] == pytest.approx(float(ref[theirs]), abs=1e-6), ours

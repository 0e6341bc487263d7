"""The evaluation runner over a fake retriever with fixed rankings, and the report."""

from __future__ import annotations

import asyncio
import io
import json
import math
from collections.abc import Sequence

import pytest
from rich.console import Console

from search.evaluation import (
    LATENCIES,
    METRICS,
    EvalResult,
    EvaluationError,
    evaluate,
    load_questions,
    print_report,
    rank_documents,
    write_json,
)
from search.models import Hit


def _hit(doc_id: str, ordinal: int = 0, path: str | None = None) -> Hit:
    return Hit(chunk_id=f"{doc_id}#{ordinal}", doc_id=doc_id, source="test", title=doc_id,
               text="", score=1.0, path=path)


class FixedRetriever:
    """Answers each (mode, query) with a fixed list of chunk hits and records every call."""

    def __init__(self, rankings: dict[str, dict[str, list[Hit]]]):
        self.rankings = rankings
        self.calls: list[tuple[str, str, int, Sequence[str] | None]] = []

    async def search(
        self, query: str, *, mode: str, k: int, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        self.calls.append((query, mode, k, sources))
        return self.rankings[mode].get(query, [])[:k]


QUERIES = {"q1": "first", "q2": "second", "q3": "third", "q4": "unjudgeable"}
QRELS = {
    "q1": {"a": 1},
    "q2": {"b": 2, "c": 1},
    "q3": {"d": 1},
    "q4": {"a": 0},  # nothing relevant: not searched, not counted
}
RANKINGS = {
    # q1: a's chunks first -> every metric 1.
    # q2: x, b, b (second chunk of b, collapsed), c -> documents x, b, c
    # q3: nothing relevant retrieved.
    "bm25": {
        "first": [_hit("a", 0), _hit("a", 1), _hit("y")],
        "second": [_hit("x"), _hit("b", 0), _hit("b", 1), _hit("c")],
        "third": [_hit("y"), _hit("z")],
    },
    # Every query ranks its relevant documents first, best grade first: a perfect run.
    "dense": {
        "first": [_hit("a")],
        "second": [_hit("b"), _hit("c")],
        "third": [_hit("d"), _hit("z")],
    },
}


async def test_evaluate_scores_by_hand():
    retriever = FixedRetriever(RANKINGS)
    result = await evaluate(retriever, QUERIES, QRELS, ["bm25", "dense"], dataset="tiny",
                            split="test")
    assert result.n_queries == 3
    bm25 = result.results["bm25"]
    # q2 documents x, b, c: DCG = 0 + 2/log2(3) + 1/log2(4) = 1.26186 + 0.5 = 1.76186
    #                       IDCG = 2/log2(2) + 1/log2(3)    = 2 + 0.63093   = 2.63093
    q2_ndcg = (2 / math.log2(3) + 0.5) / (2 + 1 / math.log2(3))  # 0.66967
    assert bm25["ndcg@10"] == pytest.approx((1 + q2_ndcg + 0) / 3)
    assert bm25["recall@100"] == pytest.approx((1 + 1 + 0) / 3)
    assert bm25["mrr@10"] == pytest.approx((1 + 1 / 2 + 0) / 3)  # q2's first relevant at rank 2
    assert bm25["hit@1"] == pytest.approx(1 / 3)
    assert bm25["hit@5"] == bm25["hit@10"] == pytest.approx(2 / 3)
    dense = result.results["dense"]
    for name in METRICS:
        assert dense[name] == pytest.approx(1.0), name
    assert result.per_query["bm25"]["q2"]["ndcg@10"] == pytest.approx(q2_ndcg)
    for mode in ("bm25", "dense"):
        lat = result.results[mode]
        assert 0 <= lat["latency_ms_p50"] <= lat["latency_ms_p95"]


async def test_asks_for_twice_depth_chunks_and_passes_sources():
    retriever = FixedRetriever(RANKINGS)
    await evaluate(retriever, QUERIES, QRELS, ["bm25", "bm25"], depth=7, sources=["kb"])
    # q4 has no relevant judgement, so it is never searched; "bm25" twice runs once.
    assert retriever.calls == [(q, "bm25", 14, ["kb"]) for q in ("first", "second", "third")]


async def test_depth_caps_distinct_documents():
    # With depth 1 only x (the best chunk's document) counts for q2, so b and c are not found.
    retriever = FixedRetriever(RANKINGS)
    result = await evaluate(retriever, {"q2": "second"}, QRELS, ["bm25"], depth=1)
    assert result.results["bm25"]["recall@100"] == 0.0
    assert rank_documents(RANKINGS["bm25"]["second"], lambda h: h.doc_id, 2) == ["x", "b"]


async def test_progress_reports_every_query():
    seen = []
    await evaluate(FixedRetriever(RANKINGS), QUERIES, QRELS, ["dense", "bm25"],
                   progress=lambda mode, done, total: seen.append((mode, done, total)))
    assert seen == [(m, i, 3) for m in ("dense", "bm25") for i in (1, 2, 3)]


async def test_latency_is_measured_around_search():
    class SlowRetriever(FixedRetriever):
        async def search(self, query, *, mode, k, sources=None):
            await asyncio.sleep(0.02 if query == "third" else 0.005)
            return await super().search(query, mode=mode, k=k, sources=sources)

    result = await evaluate(SlowRetriever(RANKINGS), QUERIES, QRELS, ["bm25"])
    lat = result.results["bm25"]
    assert lat["latency_ms_p50"] >= 5
    assert lat["latency_ms_p95"] >= 15  # the 20 ms query dominates the 95th percentile
    per_query = result.per_query["bm25"]
    assert per_query["q3"]["latency_ms"] > per_query["q1"]["latency_ms"]


async def test_as_dict_has_exactly_the_agreed_keys():
    result = await evaluate(FixedRetriever(RANKINGS), QUERIES, QRELS, ["bm25", "dense"],
                            dataset="scifact", split="test")
    out = result.as_dict()
    assert set(out) == {"dataset", "split", "n_queries", "results"}
    assert (out["dataset"], out["split"], out["n_queries"]) == ("scifact", "test", 3)
    assert list(out["results"]) == ["bm25", "dense"]
    for scores in out["results"].values():
        assert list(scores) == [
            "ndcg@10", "recall@100", "mrr@10", "hit@1", "hit@5", "hit@10",
            "latency_ms_p50", "latency_ms_p95",
        ]
        assert list(scores) == [*METRICS, *LATENCIES]
    json.dumps(out, allow_nan=False)  # serialisable as strict JSON


async def test_question_file_keys(tmp_path):
    # Hits carry absolute paths; answers are relative and match by path suffix.
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"id": "s", "question": "setup?", "answers": ["docs/setup.md"]}) + "\n")
    questions = load_questions(f)
    retriever = FixedRetriever({"hybrid": {"setup?": [
        _hit("d1", path="/kb/readme.md"),
        _hit("d2", 0, path="/kb/docs/setup.md"),
        _hit("d2", 1, path="/kb/docs/setup.md"),
    ]}})
    result = await evaluate(retriever, questions.queries, questions.qrels, ["hybrid"],
                            key=questions.key)
    assert result.results["hybrid"]["mrr@10"] == 0.5
    assert result.results["hybrid"]["hit@1"] == 0.0


async def test_errors():
    retriever = FixedRetriever(RANKINGS)
    with pytest.raises(EvaluationError, match="no search modes"):
        await evaluate(retriever, QUERIES, QRELS, [])
    with pytest.raises(EvaluationError, match="none of the 1 queries"):
        await evaluate(retriever, {"q4": "unjudgeable"}, QRELS, ["bm25"])
    with pytest.raises(EvaluationError, match="depth"):
        await evaluate(retriever, QUERIES, QRELS, ["bm25"], depth=0)
    with pytest.raises(EvaluationError, match="fetch_k"):
        await evaluate(retriever, QUERIES, QRELS, ["bm25"], depth=10, fetch_k=5)


# --- report -------------------------------------------------------------------------------------


def _result() -> EvalResult:
    scores = dict.fromkeys(METRICS, 0.5)
    return EvalResult("scifact", "test", 300, {
        "bm25": {**scores, "ndcg@10": 0.6789, "latency_ms_p50": 3.14159, "latency_ms_p95": 9.0},
        "dense": {**scores, "ndcg@10": 0.6, "latency_ms_p50": 12.0, "latency_ms_p95": 20.25},
    })


def test_report_table():
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_report(_result(), anchors={"bm25": 0.665, "dense": 0.645}, console=console)
    text = console.file.getvalue()
    assert "scifact / test — 300 queries" in text
    assert "nDCG" in text and "p95" in text and "anchor: published nDCG@10" in text
    bm25_row = next(line for line in text.splitlines() if "bm25" in line)
    assert "0.679" in bm25_row and "0.500" in bm25_row  # 3 decimals
    assert "3.1" in bm25_row and "9.0" in bm25_row  # latencies in ms
    assert "0.665" in bm25_row and "+0.014" in bm25_row
    dense_row = next(line for line in text.splitlines() if "dense" in line)
    assert "-0.045" in dense_row


def test_report_without_anchors():
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_report(_result(), console=console)
    assert "anchor" not in console.file.getvalue()


def test_write_json(tmp_path):
    target = write_json(_result(), tmp_path / "out" / "eval.json")
    data = json.loads(target.read_text())
    assert data == _result().as_dict()
    assert list(tmp_path.joinpath("out").iterdir()) == [target]  # no temporary file left behind

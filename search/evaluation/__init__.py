"""Retrieval evaluation: metrics, datasets (BEIR and team question files), a runner, reports.

Typical use (what `lorebot eval` does)::

    data = load_beir("../shared/datasets/scifact", "test")
    result = await evaluate(retriever, data.queries, data.qrels, ["bm25", "hybrid"],
                            dataset=data.name, split=data.split)
    print_report(result, anchors={"bm25": 0.665})
    write_json(result, "eval.json")
"""

from search.evaluation.datasets import (
    BeirCorpus,
    BeirDataset,
    DatasetError,
    LocationMatcher,
    QuestionSet,
    beir_documents,
    load_beir,
    load_questions,
)
from search.evaluation.metrics import (
    hit_at_k,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
)
from search.evaluation.report import (
    per_query_records,
    print_report,
    render_table,
    write_json,
    write_per_query,
)
from search.evaluation.runner import (
    LATENCIES,
    METRICS,
    EvalResult,
    EvaluationError,
    Retriever,
    evaluate,
    rank_documents,
)

__all__ = [
    "BeirCorpus",
    "BeirDataset",
    "DatasetError",
    "EvalResult",
    "EvaluationError",
    "LATENCIES",
    "LocationMatcher",
    "METRICS",
    "QuestionSet",
    "Retriever",
    "beir_documents",
    "evaluate",
    "hit_at_k",
    "load_beir",
    "load_questions",
    "mean_metrics",
    "mrr_at_k",
    "ndcg_at_k",
    "per_query_records",
    "percentile",
    "print_report",
    "rank_documents",
    "recall_at_k",
    "render_table",
    "write_json",
    "write_per_query",
]

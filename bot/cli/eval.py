"""`lorebot eval`: parser here, implementation in bot.training.evaluation (kept apart to stay small)."""

from __future__ import annotations

from pathlib import Path

from bot.cli.common import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="measure retrieval quality on a dataset or your own questions")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--dataset", type=Path, metavar="DIR", help="a dataset in BEIR layout")
    group.add_argument("--questions", type=Path, metavar="FILE",
                       help="JSONL of questions with the documents that answer them (live index)")
    p.add_argument("--split", default="test", help="qrels split (default test)")
    p.add_argument("--mode", default="bm25,dense,hybrid",
                   help="comma-separated modes (default bm25,dense,hybrid; add rerank if configured)")
    p.add_argument("--max-queries", type=positive_int, metavar="N",
                   help="evaluate the first N queries only (no published figures beside them)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--per-query", type=Path, metavar="FILE",
                   help="also write one JSON line per query and mode: its metrics, the rank of "
                        "each relevant document and the top 10 ids (dig into misses with "
                        "`lorebot search --dataset DIR`)")

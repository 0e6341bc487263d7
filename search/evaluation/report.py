"""Show an ``EvalResult`` as a table, and save it as JSON."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from search.evaluation.runner import METRICS, EvalResult

# Two-line headers are no wider than the figures, so the whole table fits 80 columns.
_HEADERS = {
    "ndcg@10": "nDCG\n@10",
    "recall@100": "R\n@100",
    "mrr@10": "MRR\n@10",
    "hit@1": "Hit\n@1",
    "hit@5": "Hit\n@5",
    "hit@10": "Hit\n@10",
}


def _fmt(value: float, digits: int) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def render_table(result: EvalResult, anchors: Mapping[str, float] | None = None) -> Table:
    """Modes as rows, metrics as columns (3 decimals), latencies in milliseconds.

    ``anchors`` maps a mode to a published nDCG@10 to compare against (e.g. BM25 on SciFact,
    0.665 in the BEIR paper); when given, two columns show it and our difference from it.
    """
    split = f" / {result.split}" if result.split else ""
    # A light box and unwrapped numbers keep every figure whole in an 80-column terminal,
    # rather than rich cutting them to "0.6…".
    table = Table(
        title=f"{result.dataset}{split} — {result.n_queries} queries",
        caption="anchor: published nDCG@10, Δ: ours minus anchor" if anchors else None,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    table.add_column("mode", style="bold", no_wrap=True)

    def number(header: str) -> None:
        table.add_column(header, justify="right", no_wrap=True, min_width=5)

    for name in METRICS:
        number(_HEADERS.get(name, name))
    number("p50\nms")
    number("p95\nms")
    if anchors:
        number("anchor")
        number("Δ")
    for mode, scores in result.results.items():
        row = [mode, *(_fmt(scores[name], 3) for name in METRICS)]
        row += [_fmt(scores["latency_ms_p50"], 1), _fmt(scores["latency_ms_p95"], 1)]
        if anchors:
            anchor = anchors.get(mode)
            if anchor is None:
                row += ["", ""]
            else:
                delta = scores["ndcg@10"] - anchor
                # Colour the difference so a regression against the literature stands out.
                style = "green" if delta >= 0 else "red"
                row += [f"{anchor:.3f}", f"[{style}]{delta:+.3f}[/{style}]"]
        table.add_row(*row)
    return table


def print_report(
    result: EvalResult,
    anchors: Mapping[str, float] | None = None,
    console: Console | None = None,
) -> None:
    """Print ``render_table`` to ``console`` (default: standard output).

    Piped to a file or CI log there is no terminal width to respect, so the table is never cut.
    """
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=120)
    console.print(render_table(result, anchors))


def per_query_records(
    result: EvalResult,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, float]],
    top: int = 10,
) -> Iterator[dict]:
    """One record per (query, mode), to find out why a question missed: its metrics (the ones
    the aggregate averages), the rank of each relevant document (None: not in the ranking,
    which is ``depth`` documents deep) and the ``top`` document ids retrieved."""
    for mode, scores in result.per_query.items():
        for qid, metrics in scores.items():
            ranking = result.rankings.get(mode, {}).get(qid, [])
            rank = {key: n for n, key in enumerate(ranking, start=1)}
            relevant = {key: grade for key, grade in qrels.get(qid, {}).items() if grade > 0}
            yield {
                "qid": qid,
                "mode": mode,
                "query": queries.get(qid),
                **{name: metrics[name] for name in METRICS},
                "latency_ms": round(metrics["latency_ms"], 3),
                "relevant": [
                    {"id": key, "grade": grade, "rank": rank.get(key)}
                    for key, grade in sorted(relevant.items(), key=lambda kv: (-kv[1], kv[0]))
                ],
                "top": ranking[:top],
            }


def write_per_query(
    result: EvalResult,
    path: str | os.PathLike[str],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, float]],
) -> Path:
    """Write `per_query_records` to ``path`` as JSON Lines (parents created; atomic)."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n"
                    for r in per_query_records(result, queries, qrels))
    return _write_atomic(path, lines)


def write_json(result: EvalResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result.as_dict()`` to ``path`` (parents created) and return the path.

    Written to a temporary file and renamed, so a reader never sees half a result.
    """
    return _write_atomic(path, json.dumps(result.as_dict(), indent=2) + "\n")


def _write_atomic(path: str | os.PathLike[str], content: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target

"""Helpers shared by the benchmarks: percentiles, tables, JSON results."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def machine() -> dict:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}\n" + "-" * (width + 20))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def eval_index(settings, dataset_name: str) -> Path:
    """The data dir's index of a dataset `lorebot eval --dataset` built; exits saying so if none."""
    path = settings.data_dir / "eval" / f"{dataset_name}.sqlite3"
    if not path.exists():
        raise SystemExit(f"no {dataset_name} index at {path}: run `lorebot eval --dataset` first")
    return path


def gate_questions(settings, qrels):
    """The gate's split of a train split's judged queries, as `lorebot finetune` draws it, and
    the documents its training queries are about (their answers)."""
    from search.finetune.data import split_for_gate

    f = settings.finetune
    split = split_for_gate(qrels, guard_fraction=f.val_fraction,
                           heldout_fraction=f.heldout_fraction, seed=f.seed)
    return split, {d for q in split.train for d, g in qrels[q].items() if g > 0}


def reranker_dirs_args(doc: str):
    """Command line of a benchmark that measures trained rerankers on a dataset."""
    import argparse

    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("rerankers", nargs="+", help="reranker directories (e.g. registry candidates)")
    p.add_argument("--dataset", default=str(SCIFACT))
    args = p.parse_args()
    missing = [d for d in args.rerankers if not Path(d).is_dir()]
    if missing:
        p.error(f"no reranker directory at {', '.join(missing)}: pass directories a "
                "`lorebot finetune reranker` run saved (`lorebot models` lists them)")
    return args

"""Sweep fusion knobs (RRF constant, side weights, candidate depth) on a dataset split.

Tune on the train split and report on test: a setting chosen on test proves nothing.
Reuses the `lorebot eval` index of the dataset under LOREBOT_DATA_DIR (run `lorebot eval` first).

    .venv/bin/python bench/tune_fusion.py --split train
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SCIFACT, print_table, write_result  # noqa: E402


async def sweep(dataset: Path, split: str, grid: dict[str, list[float]]) -> list[dict]:
    from bot.settings import Settings
    from bot.runtime.services import build_services
    from search.evaluation import evaluate, load_beir

    data = load_beir(dataset, split)
    settings = Settings()
    index_path = settings.data_dir / "eval" / f"{data.name}.sqlite3"
    if not index_path.exists():
        raise SystemExit(f"{index_path} missing: run `lorebot eval --dataset {dataset}` first")
    services = build_services(settings, index_path=index_path, with_llm=False)
    retriever = services.retriever
    rows = []
    for values in itertools.product(*grid.values()):
        knobs = dict(zip(grid, values))
        retriever.rrf_k = int(knobs["rrf_k"])
        retriever.weights = (knobs["bm25_weight"], knobs["dense_weight"])
        retriever.candidates = int(knobs["candidates"])
        result = await evaluate(retriever, data.queries, data.qrels, ["hybrid"],
                                dataset=data.name, split=split)
        m = result.results["hybrid"]
        rows.append({**knobs, "ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"],
                     "mrr@10": m["mrr@10"]})
        print(knobs, f"ndcg@10={m['ndcg@10']:.4f}", flush=True)
    await services.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=SCIFACT)
    parser.add_argument("--split", default="train")
    parser.add_argument("--rrf-k", default="20,60")
    parser.add_argument("--bm25-weight", default="1.0,1.5")
    parser.add_argument("--dense-weight", default="1.0")
    parser.add_argument("--candidates", default="50,100")
    args = parser.parse_args()
    grid = {
        "rrf_k": [float(x) for x in args.rrf_k.split(",")],
        "bm25_weight": [float(x) for x in args.bm25_weight.split(",")],
        "dense_weight": [float(x) for x in args.dense_weight.split(",")],
        "candidates": [float(x) for x in args.candidates.split(",")],
    }
    rows = sorted(asyncio.run(sweep(args.dataset, args.split, grid)), key=lambda r: -r["ndcg@10"])
    print_table(f"fusion sweep on {args.dataset.name}/{args.split} (best first)", [
        (f"k={r['rrf_k']:g} w_bm25={r['bm25_weight']:g} w_dense={r['dense_weight']:g} "
         f"cand={r['candidates']:g}", f"nDCG@10 {r['ndcg@10']:.4f}  R@100 {r['recall@100']:.3f}")
        for r in rows
    ])
    print(f"\nwrote {write_result('tune_fusion', {'split': args.split, 'rows': rows})}")


if __name__ == "__main__":
    main()

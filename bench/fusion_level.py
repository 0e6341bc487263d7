"""Chunk-level against document-level fusion (LOREBOT_SEARCH__FUSION_LEVEL) on one index.

Reuses the index `lorebot eval --dataset DIR` built under LOREBOT_DATA_DIR (run it first), so
both levels rank the very same chunks; only hybrid changes with the level. Choose on a train or
dev split; a test split is for reporting a choice made elsewhere.

    .venv/bin/python bench/fusion_level.py --dataset ../shared/datasets/scifact --split train
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SCIFACT, print_table, write_result  # noqa: E402

LEVELS = ("chunk", "document")


async def compare(dataset: Path, split: str) -> dict[str, dict[str, float]]:
    from bot.runtime.factories import new_retriever
    from bot.runtime.services import build_services
    from bot.settings import Settings
    from bot.training.evaluation import dataset_index
    from search.evaluation import evaluate, load_beir

    data = load_beir(dataset, split)
    settings = Settings()
    index_path, source = dataset_index(settings, dataset)
    if not index_path.exists():
        raise SystemExit(f"{index_path} missing: run `lorebot eval --dataset {dataset}` first")
    results = {}
    async with build_services(settings, index_path=index_path, with_llm=False) as services:
        await services.retriever.search("warm up", mode="hybrid", k=1)
        for level in LEVELS:
            # The retriever the settings would build with this level, on the same index/models.
            changed = settings.search.model_copy(update={"fusion_level": level})
            retriever = new_retriever(settings.model_copy(update={"search": changed}),
                                      services.index, services.embedder, services.reranker)
            result = await evaluate(retriever, data.queries, data.qrels, ["hybrid"],
                                    dataset=data.name, split=split, sources=[source])
            results[level] = result.results["hybrid"]
            print(level, f"ndcg@10={results[level]['ndcg@10']:.4f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=SCIFACT)
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    results = asyncio.run(compare(args.dataset, args.split))
    print_table(f"hybrid by fusion level on {args.dataset.name}/{args.split}", [
        (level, f"nDCG@10 {m['ndcg@10']:.4f}  R@100 {m['recall@100']:.3f}  "
                f"MRR@10 {m['mrr@10']:.3f}  hit@1 {m['hit@1']:.3f}  p50 {m['latency_ms_p50']:.1f} ms")
        for level, m in results.items()
    ])
    name = f"fusion_level_{args.dataset.name}_{args.split}"
    print(f"\nwrote {write_result(name, {'split': args.split, 'results': results})}")


if __name__ == "__main__":
    main()

"""Rerankers on SciFact's test split, sliced as the gate's two questions are.

The gate asks whether a candidate helps new questions about documents the training questions are
about (held-out) and does no harm on documents none is about (guard). This splits the 300 test
queries the same way: *known*, a relevant document is one of the gate's training queries'
positives; *new*, none is. Each reranker (at the blend saved with it) is compared with the data
dir's hybrid retriever by a paired bootstrap on per-query nDCG@10 per slice. Prints a table and
writes JSON. Needs a data dir whose eval index holds SciFact and whose active models are the
ones the rerankers were trained on (LOREBOT_DATA_DIR):

    LOREBOT_DATA_DIR=... python bench/reranker_test_slices.py DIR [DIR ...]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    eval_index,
    gate_questions,
    print_table,
    reranker_dirs_args,
    write_result,
)


async def run(args) -> dict:
    from bot.runtime.factories import new_reranker, new_retriever
    from bot.runtime.services import build_services
    from bot.settings import Settings
    from bot.training.gate import GATE_FETCH
    from search.evaluation import evaluate, load_beir
    from search.finetune.significance import paired

    settings = Settings()
    f = settings.finetune
    train, test = load_beir(args.dataset, "train"), load_beir(args.dataset, "test")
    index_path = eval_index(settings, train.name)
    _, answers = gate_questions(settings, train.qrels)
    known = [q for q in test.queries
             if any(g > 0 and d in answers for d, g in test.qrels[q].items())]
    slices = {"all": list(test.queries), "known": known,
              "new": [q for q in test.queries if q not in set(known)]}
    sources = [f"eval:{train.name}"]
    services = build_services(settings, index_path=index_path, with_llm=False)
    async with services:
        async def per_query(retriever, mode):
            # As the gate ranks: the top 10 documents of GATE_FETCH chunk hits.
            r = await evaluate(retriever, test.queries, test.qrels, [mode], depth=10,
                               fetch_k=GATE_FETCH, sources=sources)
            return {q: v["ndcg@10"] for q, v in r.per_query[mode].items()}

        base = await per_query(services.retriever, "hybrid")
        report: dict = {"queries": {k: len(v) for k, v in slices.items()},
                        "hybrid": {k: round(sum(base[q] for q in v) / len(v), 4)
                                   for k, v in slices.items()},
                        "rerankers": {}}
        for path in args.rerankers:
            retriever = new_retriever(settings, services.index, services.embedder,
                                      new_reranker(settings, path), default_mode="rerank")
            got = await per_query(retriever, "rerank")
            report["rerankers"][path] = {
                name: {"ndcg@10": round(sum(got[q] for q in qids) / len(qids), 4),
                       "change": paired({q: base[q] for q in qids}, {q: got[q] for q in qids},
                                        seed=f.seed).as_dict()}
                for name, qids in slices.items()}
    return report


def main() -> None:
    report = asyncio.run(run(reranker_dirs_args(__doc__)))
    rows = [("hybrid", ", ".join(f"{k} {v:.4f}" for k, v in report["hybrid"].items()))]
    for path, by in report["rerankers"].items():
        rows.append((Path(path).name, ", ".join(
            f"{k} {r['ndcg@10']:.4f} ({r['change']['mean']:+.4f} [{r['change']['low']:+.4f}, "
            f"{r['change']['high']:+.4f}])" for k, r in by.items())))
    sizes = ", ".join(f"{k} {n}" for k, n in report["queries"].items())
    print_table(f"test nDCG@10 by slice ({sizes} queries; change vs hybrid, 95%)", rows)
    print(f"wrote {write_result('reranker_test_slices', report)}")


if __name__ == "__main__":
    main()

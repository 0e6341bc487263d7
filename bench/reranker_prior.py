"""Does a trained reranker favour the documents it was shown as answers, whatever the question?

For each gate question set of SciFact's train split (the guard: documents no training question
is about; the held-out questions), every question's top LOREBOT_SEARCH__RERANK_DEPTH hybrid hits
(one per document) are reordered by the reranker alone, and each candidate's move is counted
(places up: positive). Candidates are grouped as relevant to the question, *another training
question's answer* (not relevant here), or other. A reranker that learned what answers the
question moves the middle group no more than the other non-relevant ones; one that learned which
documents are answers moves it up. Prints a table and writes JSON. Needs a data dir whose eval
index holds SciFact (LOREBOT_DATA_DIR):

    LOREBOT_DATA_DIR=... python bench/reranker_prior.py DIR [DIR ...]
"""

from __future__ import annotations

import asyncio
import statistics
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

GROUPS = ("relevant", "training answer", "other")


async def moves(settings, services, reranker, queries, qrels, answers, sources) -> dict:
    """Mean places moved per candidate group, and training answers per question."""
    from bot.training.gate import GATE_FETCH
    from search.models_runtime import run_model
    from search.rerank import hit_text

    depth = settings.search.rerank_depth
    moved: dict[str, list[int]] = {g: [] for g in GROUPS}
    for qid, query in queries.items():
        hits = await services.retriever.search(query, mode="hybrid", k=GATE_FETCH,
                                               sources=sources)
        best: dict = {}
        for hit in hits:  # the best chunk of each document, as the gate ranks documents
            best.setdefault(hit.doc_id, hit)
        top = list(best.values())[:depth]
        scores = await run_model(reranker.scores, query, [hit_text(h) for h in top])
        after = {i: place for place, i in enumerate(sorted(range(len(top)),
                                                           key=lambda i: -scores[i]))}
        relevant = {d for d, g in qrels[qid].items() if g > 0}
        for i, hit in enumerate(top):
            group = ("relevant" if hit.doc_id in relevant else
                     "training answer" if hit.doc_id in answers else "other")
            moved[group].append(i - after[i])
    return {"questions": len(queries),
            "training_answers_per_question": round(len(moved["training answer"]) / len(queries), 2),
            **{g: {"candidates": len(v), "mean_places_up": round(statistics.mean(v), 2)
                   if v else None} for g, v in moved.items()}}


async def run(args) -> dict:
    from bot.runtime.factories import new_reranker
    from bot.runtime.services import build_services
    from bot.settings import Settings
    from search.evaluation import load_beir

    settings = Settings()
    train = load_beir(args.dataset, "train")
    index_path = eval_index(settings, train.name)
    split, answers = gate_questions(settings, train.qrels)
    report: dict = {"depth": settings.search.rerank_depth, "rerankers": {}}
    services = build_services(settings, index_path=index_path, with_llm=False)
    async with services:
        for path in args.rerankers:
            reranker = new_reranker(settings, path)
            report["rerankers"][path] = {
                name: await moves(settings, services, reranker,
                                  {q: train.queries[q] for q in qids},
                                  train.qrels, answers, [f"eval:{train.name}"])
                for name, qids in (("guard", split.guard), ("heldout", split.heldout))}
    return report


def main() -> None:
    report = asyncio.run(run(reranker_dirs_args(__doc__)))
    rows = []
    for path, sets in report["rerankers"].items():
        for name, r in sets.items():
            rows.append((f"{Path(path).name} {name}",
                         f"{r['training_answers_per_question']:.2f} training answers/question; "
                         "places up: " + ", ".join(f"{g} {r[g]['mean_places_up']:+.2f}"
                                                   for g in GROUPS)))
    print_table(f"candidates moved by the reranker alone (top {report['depth']} hybrid hits)",
                rows)
    print(f"wrote {write_result('reranker_prior', report)}")


if __name__ == "__main__":
    main()

"""lorebot's segment-cosine reranker against a standard cross-encoder, on the same SciFact split.

Both are built from the shipped MiniLM weights and cut to the same layers (equal cost per pair),
trained on the same mined groups (the gate's training queries of the train split: one positive,
four hybrid hard negatives), with the same pairs per step, learning rate and steps:

* lorebot's reranker (search.finetune.reranker): cosine of the two segments' pooled tokens,
  group softmax loss;
* sentence-transformers' ``CrossEncoder`` with a fresh one-logit head, trained by
  ``CrossEncoderTrainer`` with the library's ``MultipleNegativesRankingLoss``
  (search.finetune.cross_encoder).

Each reorders the hybrid retriever's top LOREBOT_SEARCH__RERANK_DEPTH hits of the 300 test
queries, alone (blend 1) and at the blend the gate would fit on the held-out training questions;
rerank p50 is the model's time for one query's candidates at that depth, one run. Prints a table
and writes JSON. Needs a data dir whose eval index holds SciFact (LOREBOT_DATA_DIR):

    LOREBOT_DATA_DIR=... python bench/reranker_side_by_side.py [--lorebot DIR] [--max-steps N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SCIFACT, eval_index, median  # noqa: E402


async def run(args) -> dict:
    from bot.runtime.factories import new_reranker, new_retriever
    from bot.runtime.services import build_services
    from bot.settings import Settings
    from bot.training.blend import best_blend, per_blend_metrics
    from bot.training.finetune import _corpus_lookup
    from search.evaluation import load_beir
    from search.finetune.cross_encoder import train_cross_encoder
    from search.finetune.data import Passage, mine_examples, split_for_gate
    from search.finetune.reranker import RerankerTraining, train_reranker
    from search.models_runtime import run_model
    from search.rerank import hit_text

    settings = Settings()
    f, s = settings.finetune, settings.search
    train, test = load_beir(args.dataset, "train"), load_beir(args.dataset, "test")
    index_path = eval_index(settings, train.name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = [f"eval:{train.name}"]
    services = build_services(settings, index_path=index_path, with_llm=False)
    report: dict = {"depth": s.rerank_depth, "layers": f.reranker_layers, "models": {}}
    async with services:
        split = split_for_gate(train.qrels, guard_fraction=f.val_fraction,
                               heldout_fraction=f.heldout_fraction, seed=f.seed)
        corpus = _corpus_lookup(Path(args.dataset) / "corpus.jsonl")

        def fallback(doc):
            title, text = corpus.get(doc, (None, None))
            return Passage(doc, f"{title}\n{text}" if title else text) if text else None

        async def search(q):
            return await services.retriever.search(q, mode="hybrid", k=f.mine_depth,
                                                   sources=sources)

        started = time.perf_counter()
        examples = await mine_examples(
            search, {q: train.queries[q] for q in split.train},
            {q: [d for d, g in train.qrels[q].items() if g > 0] for q in split.train},
            negatives=f.hard_negatives, fallback_text=fallback)
        print(f"{len(examples)} training examples mined in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
        config = RerankerTraining(epochs=f.reranker_epochs, batch_size=f.reranker_batch_size,
                                  learning_rate=f.reranker_learning_rate,
                                  max_length=f.reranker_max_tokens, max_steps=args.max_steps,
                                  seed=f.seed, layers=f.reranker_layers,
                                  prior_negatives=f.reranker_prior_negatives)
        models = {"standard CrossEncoder (MNRL)": (out / "cross-encoder", train_cross_encoder)}
        if args.lorebot:
            models = {"lorebot segment-cosine": (Path(args.lorebot), None), **models}
        else:
            models = {"lorebot segment-cosine": (out / "lorebot", train_reranker), **models}
        for name, (path, trainer) in models.items():
            row: dict = {"path": str(path)}
            if trainer is not None:
                started = time.perf_counter()
                row["training"] = trainer(examples, path, base_model=s.embedding_model,
                                          config=config,
                                          progress=lambda st, tot, loss: print(
                                              f"{name}: step {st}/{tot} loss {loss:.3f}",
                                              file=sys.stderr) if st % 20 == 0 else None)
                row["training_s"] = round(time.perf_counter() - started, 1)
            reranker = new_reranker(settings, str(path))

            def retriever(r):
                return new_retriever(settings, services.index, services.embedder, r,
                                     default_mode="rerank")

            held = await per_blend_metrics(
                retriever, reranker, {q: train.queries[q] for q in split.heldout},
                {q: train.qrels[q] for q in split.heldout}, key=lambda h: h.doc_id,
                sources=sources, fetch_k=30)
            blend = best_blend(held, list(held[1.0]))
            on_test = await per_blend_metrics(retriever, reranker, test.queries, test.qrels,
                                              key=lambda h: h.doc_id, sources=sources,
                                              fetch_k=30)
            mean = {b: sum(r["ndcg@10"] for r in on_test[b].values()) / len(on_test[b])
                    for b in (0.0, 1.0, blend)}
            times = []
            for q in list(test.queries.values())[: args.latency_queries]:
                hits = await services.retriever.search(q, mode="hybrid", k=s.rerank_depth,
                                                       sources=sources)
                texts = [hit_text(h) for h in hits]
                t0 = time.perf_counter()
                await run_model(reranker.scores, q, texts)
                times.append((time.perf_counter() - t0) * 1000)
            row.update({"blend": blend, "test_ndcg@10_fused": round(mean[0.0], 4),
                        "test_ndcg@10_alone": round(mean[1.0], 4),
                        "test_ndcg@10_at_blend": round(mean[blend], 4),
                        "rerank_p50_ms": round(median(times), 1)})
            report["models"][name] = row
            print(f"{name}: {row}", file=sys.stderr)
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=str(SCIFACT))
    p.add_argument("--lorebot", help="an already trained lorebot reranker (e.g. the registry's)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--latency-queries", type=int, default=100)
    p.add_argument("--out", default="bench/results/rerankers")
    p.add_argument("--json", default="bench/results/reranker_side_by_side.json")
    args = p.parse_args()
    report = asyncio.run(run(args))
    print(f"| reranker (depth {report['depth']}, {report['layers']} layers) | test nDCG@10 alone "
          "| blend (fitted on held-out) | test nDCG@10 at it | rerank p50 ms | training s |")
    print("|---|---|---|---|---|---|")
    for name, r in report["models"].items():
        print(f"| {name} | {r['test_ndcg@10_alone']:.4f} | {r['blend']:.1f} | "
              f"{r['test_ndcg@10_at_blend']:.4f} | {r['rerank_p50_ms']:.0f} | "
              f"{r.get('training_s', '-')} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()

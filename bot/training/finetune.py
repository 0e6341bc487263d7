"""`lorebot finetune` and `lorebot models`: train a candidate, gate it on validation, promote.

The gate asks two questions, on queries no model of the stack trained on
(search.finetune.data.split_for_gate), each a paired bootstrap on per-query nDCG@10
(search.finetune.significance): (a) held-out questions, a seeded random share of the judged
queries: does the candidate answer new questions about this knowledge base better, the 95%
interval of the gain above zero (and the mean gain at least LOREBOT_FINETUNE__MIN_GAIN)? (b) the
guard, queries about documents no other query is about: does it lose no more than the guard's
own noise (the interval's upper bound at or above zero)? Promotion needs both, or --force.
Training data comes from a BEIR dataset's train split (--dataset) or from the live index,
feedback.jsonl and qa.jsonl.

An embedder changes every vector: its gate ranks a re-embedded copy of the index, and promoting
or rolling it back re-embeds the index in one transaction (bot.training.promotion).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.console import CliError
from bot.settings import Settings
from bot.training.gate import (
    candidate_retriever,
    gate_dense_factor,
    gate_eval,
    gate_reranker,
    vector_lookup,
    verdict,
)
from bot.training.progress import report as _report, run_training, say as _say, with_progress

# What `lorebot finetune --json` prints: finetune()'s result has a few more keys for Slack.
RESULT_KEYS = ("candidate", "kind", "before", "after", "guard", "gate", "promoted",
               "training_seconds")

Progress = Callable[[str, int, "int | None"], None]


@dataclass
class _Run:
    """One training run: its options, and where it reports (the CLI: stderr and a progress bar
    on a terminal; a worker: callbacks that update the job's Slack message)."""

    kind: str
    dataset: Path | None = None
    split: str = "train"
    epochs: int | None = None
    max_steps: int | None = None
    force: bool = False
    questions: Path | None = None  # qa.jsonl-format questions instead of the dataset's qrels
    progress: Progress | None = None  # (phase, done, total)
    say: Callable[[str], None] | None = None


async def finetune(settings: Settings, kind: str, *, dataset: str | Path | None = None,
                   split: str = "train", epochs: int | None = None, max_steps: int | None = None,
                   force: bool = False, progress: Progress | None = None,
                   say: Callable[[str], None] | None = None,
                   questions: str | Path | None = None) -> dict:
    """Train a candidate of ``kind`` (embedder, adapter, reranker), gate it, promote it if it
    wins (or ``force``). Returns {candidate, kind, before, after, promoted} plus the gate's
    figures: gain (nDCG@10), min_gain, gate_passed, validation_queries. Raises CliError with
    what to do when there is no training data or the backend cannot take the candidate.

    ``progress(phase, done, total)``: phases "indexing dataset", "mining", "training",
    "fitting fusion" (an adapter), "re-embedding", "validating active", "validating candidate",
    "promoting".
    """
    from bot.runtime.factories import model_registry
    from bot.runtime.services import build_services

    args = _Run(kind, Path(dataset) if dataset is not None else None, split, epochs, max_steps,
                force, Path(questions) if questions is not None else None, progress, say)
    f = settings.finetune
    if args.kind == "embedder":  # before any work: a promotion could not be carried out
        from bot.training.promotion import check_embedder_backend

        check_embedder_backend(settings)
    registry = model_registry(settings)
    data = _training_data(args, settings)
    services = build_services(settings, index_path=data["index_path"], with_llm=False)
    async with services:
        if data.get("beir") is not None:
            from bot.training.evaluation import _index_corpus

            _report(args, "indexing dataset", 0, None)
            await _index_corpus(services, data["beir"])
        from search.finetune.data import split_for_gate

        split_ = split_for_gate(data["qrels"], guard_fraction=f.val_fraction,
                                heldout_fraction=f.heldout_fraction, seed=f.seed)
        train_q = split_.train[: f.max_train_queries] if f.max_train_queries else split_.train
        cap = f.max_val_queries
        sets = {"heldout": split_.heldout[:cap] if cap else split_.heldout,
                "guard": split_.guard[:cap] if cap else split_.guard}
        if not train_q or not sets["heldout"] or not sets["guard"]:
            raise CliError(f"too few judged queries to split ({len(split_.train)} train, "
                           f"{len(split_.heldout)} held-out, {len(split_.guard)} guard); "
                           "add feedback, run `lorebot qa generate`, or use --dataset")
        _say(args, f"{len(train_q)} training queries; the gate: {len(sets['heldout'])} held-out "
             f"queries (drawn at random) and {len(sets['guard'])} guard queries (about "
             f"{len(split_.guard_docs)} documents no other query is about)")
        examples = await _mine(args, services, data, train_q, settings)
        candidate, trained = await _train(args, settings, registry, services, data, examples)
        before = await gate_eval(args, services.retriever, data, sets, "active")
        blend = fusion = None
        try:
            if candidate.kind == "reranker":
                after, blend = await gate_reranker(args, settings, services, data, sets,
                                                    registry.path(candidate.id))
            elif candidate.kind == "embedder" and f.embedder_fit_fusion:
                from search.fusion_weights import save_dense_factor

                embedder = trained.embedder
                after, fusion = await gate_dense_factor(
                    args, settings, trained, data, sets,
                    lambda x: setattr(embedder, "dense_factor", x))
                if fusion:
                    save_dense_factor(registry.path(candidate.id), **fusion)
            elif candidate.kind == "adapter" and _tuned_embedder(settings) \
                    and f.adapter_fusion_folds >= 2:
                # Its training queries are the fine-tuned embedder's too: fit on held-out.
                adapter = trained.embedder.adapter
                after, fusion = await gate_dense_factor(
                    args, settings, trained, data, sets,
                    lambda x: setattr(adapter, "dense_factor", x))
                adapter.save(registry.path(candidate.id))
            else:
                after = await gate_eval(args, trained, data, sets, "candidate")
        finally:
            if trained.index is not services.index:  # the embedder's candidate index
                await trained.index.close()
        gate_index = getattr(services.index, "path", None)
    gate = verdict(before, after, min_gain=f.min_gain, seed=f.seed)
    gain, passed = gate["heldout"]["mean"], gate["passed"]
    promoted = passed or args.force
    _say(args, gate_text(gate))
    figures = {"before": before["heldout"]["metrics"], "after": after["heldout"]["metrics"],
               "guard": {"before": before["guard"]["metrics"],
                         "after": after["guard"]["metrics"]}}
    registry.update_metrics(candidate.id, {"validation": figures, "gate": gate,
                                           "gain_ndcg@10": gain, "gate_passed": passed,
                                           "validation_queries": len(sets["heldout"]),
                                           "guard_queries": len(sets["guard"]),
                                           **({"blend": blend} if blend else {}),
                                           **({"fusion": fusion} if fusion else {})})
    if promoted and candidate.kind == "embedder":
        from bot.training.promotion import promote_embedder

        _report(args, "promoting", 0, None)
        await promote_embedder(settings, registry, candidate.id,
                               extra=[gate_index] if gate_index else [],
                               say=lambda text: _say(args, text))
    elif promoted:
        registry.promote(candidate.id)
    return {"candidate": candidate.id, "kind": candidate.kind, **figures, "gate": gate,
            "promoted": promoted, "gain": round(gain, 4), "min_gain": f.min_gain,
            "gate_passed": passed, "validation_queries": len(sets["heldout"]),
            "guard_queries": len(sets["guard"]), "training_seconds": candidate.training_seconds,
            **({"blend": blend["blend"]} if blend else {}),
            **({"dense_factor": fusion["dense_factor"], "dense_factor_fit": "held-out"}
               if fusion else
               {"dense_factor": candidate.settings["dense_factor"],
                "dense_factor_fit": "out of fold"}
               if "dense_factor" in candidate.settings else {})}


def _tuned_embedder(settings) -> bool:
    """Whether a fine-tuned embedder from the registry is in use: the training queries of a
    stack are its training data too (search.finetune.data.split_for_gate)."""
    from bot.runtime.factories import model_registry

    registry = model_registry(settings)
    return settings.finetune.use_registry and registry.active("embedder") is not None


def gate_text(gate: dict) -> str:
    """The gate's two verdicts in one line each (the CLI and Slack both show them)."""
    h, g = gate["heldout"], gate["guard"]
    return (f"held-out questions: nDCG@10 {h['mean']:+.4f}, 95% interval [{h['low']:+.4f}, "
            f"{h['high']:+.4f}] over {h['n']} queries: "
            f"{'gains' if h['passed'] else 'no gain beyond noise'}\n"
            f"guard (new documents): nDCG@10 {g['mean']:+.4f}, 95% interval [{g['low']:+.4f}, "
            f"{g['high']:+.4f}] over {g['n']} queries: "
            f"{'no harm beyond noise' if g['passed'] else 'worse beyond noise'}")


def _training_data(args, settings: Settings) -> dict:
    if args.dataset is not None:
        from search.evaluation import load_beir

        if args.split == "test":
            print("lorebot: warning: training on the test split makes its figures meaningless",
                  file=sys.stderr)
        beir = load_beir(args.dataset, args.split)
        from bot.training.evaluation import dataset_index

        index_path, _ = dataset_index(settings, args.dataset)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        queries, qrels = beir.queries, beir.qrels
        if args.questions is not None:  # e.g. `qa generate --dataset DIR`: the corpus alone
            queries, qrels = _question_file(args.questions)
        return {"beir": beir, "index_path": index_path, "queries": queries,
                "qrels": qrels, "key": lambda h: h.doc_id, "negatives": {},
                "corpus_path": Path(args.dataset) / "corpus.jsonl"}
    from bot.training.qa import training_pairs
    from search.finetune.data import hit_key

    pairs = training_pairs(settings.data_dir)  # feedback.jsonl and qa.jsonl
    if not pairs.positives:
        raise CliError("no helpful feedback with cited sources in feedback.jsonl and no "
                       "generated questions in qa.jsonl yet; run `lorebot qa generate`, or "
                       "train on a dataset with --dataset DIR")
    qrels = {q: {k: 1 for k in keys} for q, keys in pairs.positives.items() if keys}
    return {"beir": None, "index_path": None, "queries": pairs.queries, "qrels": qrels,
            "key": hit_key, "negatives": pairs.negatives, "pairs": pairs}


def _question_file(path: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries and qrels (by document id) from a qa.jsonl-format file."""
    from bot.training.qa import read_qa

    if not path.is_file():
        raise CliError(f"--questions {path}: no such file; write one with `lorebot qa generate "
                       "--dataset DIR --out FILE`")
    queries, qrels = {}, {}
    for rec in read_qa(path):
        if rec.get("question") and rec.get("doc_id"):
            queries[rec["id"]] = rec["question"]
            qrels.setdefault(rec["id"], {})[str(rec["doc_id"])] = 1
    if not queries:
        raise CliError(f"--questions {path}: no question with a doc_id in it")
    return queries, qrels


async def _mine(args, services, data, train_q, settings):
    from search.finetune.data import Passage, mine_examples, mine_feedback_examples

    f = settings.finetune

    async def search(query):
        return await services.retriever.search(query, mode="hybrid", k=f.mine_depth)

    started = time.perf_counter()
    if data["beir"] is None:
        from search.finetune.data import FeedbackPairs

        p = data["pairs"]
        keep = set(train_q)
        sub = FeedbackPairs({q: t for q, t in p.queries.items() if q in keep},
                            {q: v for q, v in p.positives.items() if q in keep},
                            {q: v for q, v in p.negatives.items() if q in keep})
        _report(args, "mining", 0, len(train_q))
        examples = await mine_feedback_examples(search, sub, negatives=f.hard_negatives)
    else:
        corpus = await asyncio.to_thread(_corpus_lookup, data["corpus_path"])  # off the loop

        def fallback(doc_id):
            title, text = corpus.get(doc_id, (None, None))
            return Passage(doc_id, f"{title}\n{text}" if title else text) if text else None

        positives = {q: [d for d, g in data["qrels"][q].items() if g > 0] for q in train_q}
        examples = await with_progress(
            args, "mining", "mining hard negatives", len(train_q),
            lambda tick: mine_examples(search, {q: data["queries"][q] for q in train_q},
                                       positives, negatives=f.hard_negatives,
                                       fallback_text=fallback, progress=tick),
        )
    _say(args, f"{len(examples)} training examples, "
         f"{sum(len(e.negatives) for e in examples)} hard negatives "
         f"({time.perf_counter() - started:.1f} s)")
    return examples


def _corpus_lookup(path: Path) -> dict[str, tuple[str, str]]:
    import json

    out = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                out[str(obj["_id"])] = (obj.get("title", ""), obj.get("text", ""))
    return out


async def _train(args, settings, registry, services, data, examples):
    """Train the candidate, register it, and return it with a retriever that uses it."""
    from bot.runtime.factories import new_reranker, new_retriever
    from search.finetune.data import digest
    from search.finetune.registry import Candidate

    f, s = settings.finetune, settings.search
    cid = registry.new_id(args.kind)
    out = registry.path(cid)
    base_embedder = getattr(services.embedder, "inner", services.embedder)
    if args.kind == "reranker":
        from search.finetune.reranker import RerankerTraining, train_reranker

        config = RerankerTraining(
            epochs=args.epochs or f.reranker_epochs, batch_size=f.reranker_batch_size,
            learning_rate=f.reranker_learning_rate, max_length=f.reranker_max_tokens,
            max_steps=args.max_steps, seed=f.seed, layers=f.reranker_layers,
            prior_negatives=f.reranker_prior_negatives,
        )
        base = s.embedding_model
        started = time.perf_counter()
        stats = await run_training(args, "training reranker", train_reranker, examples, out,
                                base_model=base, config=config)
        retriever = new_retriever(settings, services.index, services.embedder,
                                  new_reranker(settings, str(out)), default_mode="rerank")
    elif args.kind == "embedder":
        from search.finetune.embedder import EmbedderTraining, train_embedder

        config = EmbedderTraining(
            epochs=args.epochs or f.embedder_epochs, batch_size=f.embedder_batch_size,
            learning_rate=f.embedder_learning_rate, max_length=f.embedder_max_tokens,
            max_steps=args.max_steps, seed=f.seed,
        )
        base = base_embedder.model_id  # the active embedder, else the base model
        started = time.perf_counter()
        stats = await run_training(args, "training embedder", train_embedder, examples, out,
                                base_model=base, config=config)
        retriever = None  # built below, once the candidate is registered
    else:
        from search.adapter import AdaptedEmbedder
        from search.finetune.adapter import (
            AdapterTraining,
            train_adapter,
            vector_examples,
        )

        config = AdapterTraining(epochs=args.epochs or f.adapter_epochs,
                                 learning_rate=f.adapter_learning_rate,
                                 max_steps=args.max_steps, seed=f.seed)
        # The adapter maps this embedder's query vectors: wiring uses it only with this one.
        base = base_embedder.model_id
        started = time.perf_counter()
        # The adapter learns on the base model's query vectors, as it will see them at query time.
        qvecs = await base_embedder.embed_documents([e.query for e in examples])
        query_vectors = {e.qid: v for e, v in zip(examples, qvecs)}
        lookup = await vector_lookup(services, base_embedder, examples)
        # Reads stored vectors from SQLite: off the event loop (a bot may be running on it).
        vex = await asyncio.to_thread(vector_examples, examples, lookup, query_vectors)
        adapter, stats = await run_training(args, "training adapter", train_adapter, vex,
                                         config=config)
        if f.adapter_fusion_folds >= 2 and not _tuned_embedder(settings):
            from bot.training.adapter_fusion import fit_dense_factor

            adapter.dense_factor, fit = await fit_dense_factor(
                args, settings, services, data, base_embedder, examples, lookup, query_vectors,
                config)
            stats = {**stats, **fit}
        adapter.save(out)
        retriever = new_retriever(settings, services.index,
                                  AdaptedEmbedder(base_embedder, adapter), services.reranker)
    seconds = time.perf_counter() - started
    from dataclasses import asdict

    candidate = registry.register(Candidate(
        id=cid, kind=args.kind, base_model=base, data_digest=digest(examples),
        settings={**asdict(config), "dataset": str(args.dataset) if args.dataset else "feedback",
                  "split": args.split if args.dataset else None, **stats},
        training_seconds=round(seconds, 1),
    ))
    _say(args, f"trained {cid} in {seconds:.1f} s ({stats})")
    if retriever is None:
        retriever = await candidate_retriever(args, settings, services, out)
    return candidate, retriever



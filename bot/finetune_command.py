"""`lorebot finetune` and `lorebot models`: train a candidate, gate it on validation, promote.

The gate: candidate and active model are evaluated on the same validation queries (hit@1/5/10,
MRR@10, nDCG@10); the candidate is promoted only when its nDCG@10 beats the active one's by
LOREBOT_FINETUNE__MIN_GAIN, or with --force. Training data comes from a BEIR dataset's train split
(--dataset) or from the live index and feedback.jsonl; validation queries are split off by
relevant document, so no document is seen on both sides.

An embedder changes every vector: its gate ranks a re-embedded copy of the index, and promoting
or rolling it back re-embeds the index in one transaction (bot.embedder_promotion).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bot.cli import EXIT_OK, CliError, print_json
from bot.settings import Settings

GATE_METRICS = ("ndcg@10", "mrr@10", "hit@1", "hit@5", "hit@10")
# Validation ranks the top 10 documents from this many chunk hits (the reranker rescores the
# top LOREBOT_SEARCH__RERANK_DEPTH of them).
GATE_FETCH = 30


# What `lorebot finetune --json` prints: finetune()'s result has a few more keys for Slack.
RESULT_KEYS = ("candidate", "kind", "before", "after", "promoted")

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
    progress: Progress | None = None  # (phase, done, total)
    say: Callable[[str], None] | None = None


async def run_finetune(args, settings: Settings | None = None) -> int:
    settings = settings or Settings()
    say = None if args.json else (lambda text: print(text, file=sys.stderr))
    result = await finetune(settings, args.kind, dataset=args.dataset, split=args.split,
                            epochs=args.epochs, max_steps=args.max_steps, force=args.force,
                            say=say)
    if args.json:
        print_json({k: result[k] for k in RESULT_KEYS})
    else:
        before, after = result["before"], result["after"]
        verdict = ("promoted" + (" (--force)" if not result["gate_passed"] else "")
                   if result["promoted"] else
                   f"refused: nDCG@10 gain {result['gain']:+.4f} < {result['min_gain']} "
                   "(LOREBOT_FINETUNE__MIN_GAIN); --force promotes anyway")
        print(f"{result['candidate']}: nDCG@10 {before['ndcg@10']:.4f} -> {after['ndcg@10']:.4f} "
              f"on {result['validation_queries']} validation queries; {verdict}")
    return EXIT_OK


async def finetune(settings: Settings, kind: str, *, dataset: str | Path | None = None,
                   split: str = "train", epochs: int | None = None, max_steps: int | None = None,
                   force: bool = False, progress: Progress | None = None,
                   say: Callable[[str], None] | None = None) -> dict:
    """Train a candidate of ``kind`` (embedder, adapter, reranker), gate it, promote it if it
    wins (or ``force``). Returns {candidate, kind, before, after, promoted} plus the gate's
    figures: gain (nDCG@10), min_gain, gate_passed, validation_queries. Raises CliError with
    what to do when there is no training data or the backend cannot take the candidate.

    ``progress(phase, done, total)``: phases "indexing dataset", "mining", "training",
    "re-embedding", "validating active", "validating candidate", "promoting".
    """
    from bot.wiring import build_services, model_registry

    args = _Run(kind, Path(dataset) if dataset is not None else None, split, epochs, max_steps,
                force, progress, say)
    f = settings.finetune
    if args.kind == "embedder":  # before any work: a promotion could not be carried out
        from bot.embedder_promotion import check_embedder_backend

        check_embedder_backend(settings)
    registry = model_registry(settings)
    data = _training_data(args, settings)
    services = build_services(settings, index_path=data["index_path"], with_llm=False)
    async with services:
        if data.get("beir") is not None:
            from bot.eval_command import _index_corpus

            _report(args, "indexing dataset", 0, None)
            await _index_corpus(services, data["beir"])
        from search.finetune.data import split_by_document

        split_ = split_by_document(data["qrels"], val_fraction=f.val_fraction, seed=f.seed)
        train_q = split_.train[: f.max_train_queries] if f.max_train_queries else split_.train
        val_q = (split_.validation[: f.max_val_queries] if f.max_val_queries
                 else split_.validation)
        if not train_q or not val_q:
            raise CliError(f"too few judged queries to split ({len(split_.train)} train, "
                           f"{len(split_.validation)} validation); add feedback or use --dataset")
        _say(args, f"{len(train_q)} training and {len(val_q)} validation queries, "
             f"{len(split_.train_docs)} and {len(split_.val_docs)} relevant documents, disjoint")
        examples = await _mine(args, services, data, train_q, settings)
        candidate, trained = await _train(args, settings, registry, services, examples)
        before = await _gate_eval(args, services.retriever, data, val_q, "active")
        blend = None
        try:
            if candidate.kind == "reranker":
                after, blend = await _gate_reranker(args, settings, services, data, val_q,
                                                    registry.path(candidate.id))
            else:
                after = await _gate_eval(args, trained, data, val_q, "candidate")
        finally:
            if trained.index is not services.index:  # the embedder's candidate index
                await trained.index.close()
        gate_index = getattr(services.index, "path", None)
    gain = after["ndcg@10"] - before["ndcg@10"]
    passed = gain >= f.min_gain
    promoted = passed or args.force
    registry.update_metrics(candidate.id, {"validation": {"before": before, "after": after},
                                           "gain_ndcg@10": gain, "gate_passed": passed,
                                           "validation_queries": len(val_q),
                                           **({"blend": blend} if blend else {})})
    if promoted and candidate.kind == "embedder":
        from bot.embedder_promotion import promote_embedder

        _report(args, "promoting", 0, None)
        await promote_embedder(settings, registry, candidate.id,
                               extra=[gate_index] if gate_index else [],
                               say=lambda text: _say(args, text))
    elif promoted:
        registry.promote(candidate.id)
    return {"candidate": candidate.id, "kind": candidate.kind, "before": before,
            "after": after, "promoted": promoted, "gain": round(gain, 4),
            "min_gain": f.min_gain, "gate_passed": passed, "validation_queries": len(val_q)}


def _training_data(args, settings: Settings) -> dict:
    if args.dataset is not None:
        from search.evaluation import load_beir

        if args.split == "test":
            print("lorebot: warning: training on the test split makes its figures meaningless",
                  file=sys.stderr)
        beir = load_beir(args.dataset, args.split)
        from bot.eval_command import _safe

        index_path = settings.data_dir / "eval" / f"{_safe(beir.name)}.sqlite3"
        index_path.parent.mkdir(parents=True, exist_ok=True)
        return {"beir": beir, "index_path": index_path, "queries": beir.queries,
                "qrels": beir.qrels, "key": lambda h: h.doc_id, "negatives": {},
                "corpus_path": Path(args.dataset) / "corpus.jsonl"}
    from bot.qa_command import training_pairs
    from search.finetune.data import hit_key

    pairs = training_pairs(settings.data_dir)  # feedback.jsonl and qa.jsonl
    if not pairs.positives:
        raise CliError("no helpful feedback with cited sources in feedback.jsonl and no "
                       "generated questions in qa.jsonl yet; run `lorebot qa generate`, or "
                       "train on a dataset with --dataset DIR")
    qrels = {q: {k: 1 for k in keys} for q, keys in pairs.positives.items() if keys}
    return {"beir": None, "index_path": None, "queries": pairs.queries, "qrels": qrels,
            "key": hit_key, "negatives": pairs.negatives, "pairs": pairs}


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
        examples = await _progress(
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


async def _train(args, settings, registry, services, examples):
    """Train the candidate, register it, and return it with a retriever that uses it."""
    from search.finetune.data import digest
    from bot.wiring import new_reranker, new_retriever
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
        )
        base = s.embedding_model
        started = time.perf_counter()
        stats = await _training(args, "training reranker", train_reranker, examples, out,
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
        stats = await _training(args, "training embedder", train_embedder, examples, out,
                                base_model=base, config=config)
        retriever = None  # built below, once the candidate is registered
    else:
        from search.adapter import AdaptedEmbedder
        from search.finetune.adapter import AdapterTraining, train_adapter, vector_examples

        config = AdapterTraining(epochs=args.epochs or f.adapter_epochs,
                                 learning_rate=f.adapter_learning_rate,
                                 max_steps=args.max_steps, seed=f.seed)
        # The adapter maps this embedder's query vectors: wiring uses it only with this one.
        base = base_embedder.model_id
        started = time.perf_counter()
        # The adapter learns on the base model's query vectors, as it will see them at query time.
        qvecs = await base_embedder.embed_documents([e.query for e in examples])
        query_vectors = {e.qid: v for e, v in zip(examples, qvecs)}
        # Reads stored vectors from SQLite: off the event loop (a bot may be running on it).
        vex = await asyncio.to_thread(vector_examples, examples,
                                      await _vector_lookup(services, base_embedder, examples),
                                      query_vectors)
        adapter, stats = await _training(args, "training adapter", train_adapter, vex,
                                         config=config)
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
        retriever = await _candidate_retriever(args, settings, services, out)
    return candidate, retriever


async def _candidate_retriever(args, settings, services, model_dir: Path):
    """The gate ranks the whole corpus with the candidate's vectors: a copy of the index,
    re-embedded with the candidate (kept in the candidate's directory for its promotion)."""
    from bot.embedder_promotion import build_candidate_index
    from bot.wiring import new_embedder, new_retriever, open_index
    from search.index.sqlite import SqliteIndex

    if not isinstance(services.index, SqliteIndex):
        raise CliError("the embedder gate needs the embedded (SQLite) index")
    embedder = new_embedder(settings, str(model_dir.resolve()))
    started = time.perf_counter()
    path = await _progress(args, "re-embedding", "re-embedding the index with the candidate",
                           None, lambda tick: build_candidate_index(services.index.path, model_dir,
                                                              embedder, progress=tick))
    _say(args, f"candidate index {path} ({time.perf_counter() - started:.1f} s)")
    index = open_index(settings, path, embedder_model=embedder.model_id)
    # No adapter: the active one maps the old model's query vectors (wiring drops it too).
    return new_retriever(settings, index, embedder, services.reranker,
                         default_mode=services.retriever.default_mode)


async def _vector_lookup(services, embedder, examples):
    """Stored chunk vectors by chunk id: read from the SQLite index, else embedded again."""
    from search.index.sqlite import SqliteIndex

    if isinstance(services.index, SqliteIndex):
        import sqlite3

        import numpy as np

        path = services.index.path

        def lookup(ids):
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                out = {}
                for i in range(0, len(ids), 500):
                    part = ids[i: i + 500]
                    q = ",".join("?" * len(part))
                    for cid, blob in conn.execute(
                            f"SELECT chunk_id, vector FROM chunks WHERE chunk_id IN ({q})", part):
                        out[cid] = np.frombuffer(blob, dtype=np.float32)
                return out
            finally:
                conn.close()

        return lookup
    texts = {p.chunk_id: p.text for e in examples for p in (*e.positives, *e.negatives)}
    ids = [c for c in texts if c]
    vecs = await embedder.embed_documents([texts[c] for c in ids])
    table = dict(zip(ids, vecs))
    return lambda wanted: {c: table[c] for c in wanted if c in table}


async def _gate_eval(args, retriever, data, val_q, label) -> dict:
    from search.evaluation import evaluate

    queries = {q: data["queries"][q] for q in val_q}
    qrels = {q: data["qrels"][q] for q in val_q}
    mode = retriever.default_mode
    sources = _sources(args, data)
    result = await _progress(args, f"validating {label}", f"validating {label} ({mode})",
                             len(queries),
                             lambda tick: evaluate(retriever, queries, qrels, [mode], depth=10,
                                                   fetch_k=GATE_FETCH, key=data["key"],
                                                   sources=sources,
                                                   progress=lambda m, d, t: tick(d, t)))
    scores = result.results[mode]
    return {"mode": mode, **{m: round(scores[m], 4) for m in GATE_METRICS}}


def _sources(args, data) -> list[str] | None:
    """A dataset is searched within its own corpus; feedback queries search everything."""
    if args.dataset is None:
        return None
    from bot.eval_command import _corpus_source

    return [_corpus_source(data["beir"].name)]


async def _gate_reranker(args, settings, services, data, val_q, model_dir: Path):
    """The candidate reranker's validation metrics, cross-fitted over its blend
    (bot.reranker_blend), and the blend saved with it: (metrics, blend figures)."""
    from bot.reranker_blend import BLENDS, best_blend, cross_fitted, per_blend_metrics
    from bot.wiring import new_reranker, new_retriever
    from search import rerank_model
    from search.finetune.data import split_by_document

    queries = {q: data["queries"][q] for q in val_q}
    qrels = {q: data["qrels"][q] for q in val_q}
    per_blend = await _progress(
        args, "validating candidate", "validating candidate (rerank, every blend)", len(queries),
        lambda tick: per_blend_metrics(
            lambda reranker: new_retriever(settings, services.index, services.embedder,
                                           reranker, default_mode="rerank"),
            new_reranker(settings, str(model_dir)), queries, qrels, key=data["key"],
            sources=_sources(args, data), fetch_k=GATE_FETCH, progress=tick))
    judged = list(per_blend[BLENDS[0]])
    halves = split_by_document({q: qrels[q] for q in judged}, val_fraction=0.5,
                               seed=settings.finetune.seed)
    after, half_blends = cross_fitted(per_blend, (halves.train, halves.validation),
                                      GATE_METRICS)
    blend = best_blend(per_blend, judged)
    rerank_model.set_blend(model_dir, blend)
    by_blend = {f"{b:.1f}": round(sum(per_blend[b][q]["ndcg@10"] for q in judged)
                                  / len(judged), 4) for b in BLENDS}
    _say(args, f"blend {blend:.1f} (validation nDCG@10 by blend: fused order "
         f"{by_blend['0.0']:.4f}, reranker alone {by_blend['1.0']:.4f}, "
         f"{by_blend[f'{blend:.1f}']:.4f} at {blend:.1f}); the gate's figure is cross-fitted "
         f"(halves ranked with blends {half_blends[0]:.1f} and {half_blends[1]:.1f})")
    return ({"mode": "rerank", **{m: round(after[m], 4) for m in GATE_METRICS}},
            {"blend": blend, "half_blends": list(half_blends), "ndcg@10_by_blend": by_blend})


async def run_models(args, settings: Settings | None = None) -> int:
    from bot.wiring import model_registry
    from search.finetune.registry import KINDS

    settings = settings or Settings()
    registry = model_registry(settings)
    if args.action == "rollback":
        if args.target not in KINDS:
            raise CliError(f"rollback needs a kind: {', '.join(KINDS)}")
        if args.target == "embedder":  # the index goes back to the previous model's vectors
            from bot.embedder_promotion import rollback_embedder

            now = await rollback_embedder(settings, registry)
        else:
            now = registry.rollback(args.target)
        print(f"{args.target}: {now.id if now else 'base model'} is active now")
        return EXIT_OK
    if args.action == "promote":
        if not args.target:
            raise CliError("promote needs a candidate id (see `lorebot models`)")
        if registry.get(args.target).kind == "embedder":  # re-embeds the index first
            from bot.embedder_promotion import promote_embedder

            cand = await promote_embedder(settings, registry, args.target)
        else:
            cand = registry.promote(args.target)
        print(f"{cand.kind}: {cand.id} is active now (promoted by hand)")
        return EXIT_OK
    active = {k: (c.id if (c := registry.active(k)) else None) for k in KINDS}
    cands = registry.candidates()
    if args.json:
        from dataclasses import asdict

        print_json({"active": active, "candidates": [asdict(c) for c in cands]})
        return EXIT_OK
    for kind in KINDS:
        print(f"active {kind}: {active[kind] or 'base model'}")
    if not cands:
        print("no candidates yet: `lorebot finetune reranker --dataset DIR` trains one")
    for c in cands:
        val = (c.metrics or {}).get("validation", {})
        b, a = val.get("before", {}).get("ndcg@10"), val.get("after", {}).get("ndcg@10")
        score = f"val nDCG@10 {b:.4f} -> {a:.4f}" if a is not None and b is not None else "no gate"
        mark = "*" if active.get(c.kind) == c.id else " "
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(c.created))
        print(f"{mark} {c.id:32} {c.kind:9} {when}  {score}  train {c.training_seconds} s  "
              f"data {c.data_digest}")
    return EXIT_OK


def _say(args, text: str) -> None:
    if args.say is not None:
        args.say(text)


def _report(args, phase: str, done: int, total: int | None) -> None:
    if args.progress is not None:
        args.progress(phase, done, total)


# Training runs on a thread of its own, not on the model thread (search.models_runtime): one
# training call holds its thread for minutes, and a bot running jobs in-process must keep
# embedding questions meanwhile (slower while both compete for the cores, but not stalled).
_TRAIN_EXECUTOR: ThreadPoolExecutor | None = None


async def _training(args, label, fn, *fn_args, **fn_kwargs):
    """``fn(*fn_args, progress=…, **fn_kwargs)`` on the training thread, its steps reported as
    the phase "training"."""
    import functools

    global _TRAIN_EXECUTOR
    if _TRAIN_EXECUTOR is None:
        _TRAIN_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorebot-train")
    loop = asyncio.get_running_loop()

    def start(tick):
        call = functools.partial(fn, *fn_args, **fn_kwargs,
                                 progress=lambda step, total, _loss: tick(step, total))
        return loop.run_in_executor(_TRAIN_EXECUTOR, call)

    return await _progress(args, "training", label, None, start)


async def _progress(args, phase, label, total, start):
    """Run ``start(tick)``, ``tick(done, total)``: reported as ``phase`` to ``args.progress``
    (a worker), else shown as a bar labelled ``label`` on a terminal."""
    if (report := getattr(args, "progress", None)) is not None:
        report(phase, 0, total)
        return await start(lambda done, n=None: report(phase, done, n or total))
    if not sys.stderr.isatty():
        return await start(lambda *_: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=total)

        def tick(done, n=None) -> None:
            bar.update(task, completed=done, total=n or total)

        return await start(tick)

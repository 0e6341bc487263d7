"""`lorebot eval`: retrieval quality on a BEIR dataset or on a team's own question file."""

from __future__ import annotations

import sys
from pathlib import Path

from bot.console import EXIT_OK, CliError
from bot.settings import Settings

# nDCG@10 on SciFact test shown beside our figures: published BM25 (BEIR), MiniLM dense (MTEB) and
# BM25 + cross-encoder (BEIR) from ../shared/datasets/README.md; for hybrid, LlamaIndex's BM25 +
# MiniLM fusion as measured on this machine (0.717), the best other hybrid we know of.
SCIFACT_ANCHORS = {"bm25": 0.665, "dense": 0.645, "hybrid": 0.717, "rerank": 0.688}


MODE_NAMES = ("bm25", "dense", "hybrid", "rerank")


def check_args(args) -> list[str]:
    """The modes asked for; every argument is checked here, before anything is indexed."""
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    if not modes:
        raise CliError("--mode needs at least one of bm25, dense, hybrid, rerank")
    if unknown := [m for m in modes if m not in MODE_NAMES]:
        raise CliError(f"--mode: unknown mode {', '.join(unknown)}; choose from "
                       f"{', '.join(MODE_NAMES)} (comma-separated)")
    if args.max_queries is not None and args.max_queries < 1:
        raise CliError(f"--max-queries must be 1 or more, not {args.max_queries}")
    for flag, value in (("--json", args.json), ("--per-query", getattr(args, "per_query", None))):
        if value is not None and not Path(value).expanduser().absolute().parent.is_dir():
            raise CliError(f"{flag} {value}: the folder {Path(value).parent} does not exist")
    return modes


def dataset_index(settings: Settings, dataset_dir: Path) -> tuple[Path, str]:
    """The index `lorebot eval --dataset DIR` builds for DIR's corpus, and the corpus's source
    name in it (named after the folder, as `load_beir` names the dataset)."""
    name = Path(dataset_dir).name
    return settings.data_dir / "eval" / f"{_safe(name)}.sqlite3", _corpus_source(name)


async def run_eval(args, settings: Settings) -> int:
    from search.evaluation import (
        evaluate,
        load_beir,
        load_questions,
        print_report,
        write_json,
        write_per_query,
    )

    modes = check_args(args)
    if args.dataset is not None:
        data = load_beir(args.dataset, args.split)
        index_path, source = dataset_index(settings, args.dataset)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        services = _services(settings, index_path)
        queries, qrels, key, name, split = data.queries, data.qrels, (lambda h: h.doc_id), data.name, data.split
        sources = [source]
    else:
        questions = load_questions(args.questions, base_dir=Path.cwd())
        services = _services(settings, None)
        queries, qrels, key = questions.queries, questions.qrels, questions.key
        name, split, sources = args.questions.name, None, None
    async with services:
        if "rerank" in modes and services.reranker is None:  # before the corpus is indexed
            raise CliError("mode rerank needs a reranker: set LOREBOT_SEARCH__RERANKER_MODEL or "
                           "promote one (`lorebot finetune reranker`), or drop it from --mode")
        full = not args.max_queries or args.max_queries >= len(queries)
        if not full:
            keep = list(queries)[: args.max_queries]
            queries = {q: queries[q] for q in keep}
            qrels = {q: qrels[q] for q in keep if q in qrels}
        if args.dataset is not None:
            from bot.console import interrupt_notice

            async with interrupt_notice(services.index):  # Ctrl-C while timing the embedding
                total = await _announce(services, data, len(queries), modes)
            await _index_corpus(services, data, total=total)
        else:
            await _check_answers(services, questions, args.questions)
        await services.retriever.search("warm up", mode=modes[-1], k=1)  # load models first
        result = await _with_progress(
            lambda progress: evaluate(
                services.retriever, queries, qrels, modes, key=key, progress=progress,
                dataset=name, split=split, sources=sources,
            ),
            total=len(queries) * len(modes),
        )
    # Published figures are for the whole test split: beside a subset they would mislead.
    anchors = SCIFACT_ANCHORS if name.lower() == "scifact" and split == "test" and full else None
    if name.lower() == "scifact" and not anchors:
        print("(published SciFact figures are shown only for the full test split)", file=sys.stderr)
    print_report(result, anchors={m: a for m, a in (anchors or {}).items() if m in modes} or None)
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if getattr(args, "per_query", None):
        write_per_query(result, args.per_query, queries, qrels)
        print(f"wrote {args.per_query} (one line per query and mode)", file=sys.stderr)
    return EXIT_OK


async def _check_answers(services, questions, file: Path) -> None:
    """Warn about every answer entry that matches no indexed document: it can only score 0."""
    from types import SimpleNamespace

    stored = await services.index.documents()
    if not stored:
        raise CliError("the knowledge base is empty: `lorebot eval --questions` searches the live "
                       "index; index your documents first with `lorebot index PATH`")
    found = {questions.matcher.key(SimpleNamespace(doc_id=d.doc_id, path=d.path, url=d.url))
             for d in stored.values()}
    for qid, answers in questions.qrels.items():
        for entry in answers:
            if entry not in found:
                print(f"lorebot: warning: {file}: the answer {entry} of question {qid} matches no "
                      "indexed document (a wrong path, or not indexed?); it can only score 0",
                      file=sys.stderr)


async def _announce(services, data, n_queries: int, modes: list[str]) -> int:
    """Say up front that the corpus is indexed first, and roughly how long that takes; returns
    the number of documents in the corpus."""
    import time

    from bot.console import about

    s = services.settings.search
    stored = set(await services.index.documents(_corpus_source(data.name)))
    total = new = chunks = 0
    samples: list[str] = []
    stride = max(1, s.chunk_tokens - s.chunk_overlap)
    for doc_id, title, text in data.corpus:
        total += 1
        if doc_id in stored:
            continue
        new += 1
        tokens = (len(title) + len(text)) / 4  # about 4 characters per token
        chunks += max(1, -(-int(tokens - s.chunk_overlap) // stride))
        if len(samples) < 16:
            samples.append(f"{title}\n{text}"[: s.chunk_tokens * 4])
    head = (f"eval: the corpus ({total} documents) is indexed first, into its own index; then "
            f"{n_queries} queries × {len(modes)} modes are searched.")
    if not new:
        print(f"{head} It is indexed already: only changed documents are embedded.",
              file=sys.stderr, flush=True)
        return total
    print(f"{head} Loading the models to time the embedding …", file=sys.stderr, flush=True)
    await services.warm_up()
    started = time.perf_counter()
    await services.embedder.embed_documents(samples)
    rate = len(samples) / max(time.perf_counter() - started, 1e-3)
    print(f"eval: {new} documents to embed, about {chunks} chunks at {rate:.0f} chunks/s here: "
          f"{about(chunks / rate)} (unchanged documents are skipped on the next run).",
          file=sys.stderr, flush=True)
    return total


def _services(settings: Settings, index_path: Path | None):
    from bot.runtime.services import build_services

    return build_services(settings, index_path=index_path, with_llm=False)


def _corpus_source(name: str) -> str:
    return f"eval:{name}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "dataset"


async def _index_corpus(services, data, total: int | None = None) -> None:
    """Index (or incrementally refresh) the dataset's own index: unchanged corpus, no embedding."""
    from bot.console import IndexProgress, interrupt_notice
    from search.evaluation import beir_documents

    source = _corpus_source(data.name)
    progress = IndexProgress("indexing corpus", total, tty=sys.stderr.isatty())
    async with interrupt_notice(services.index):
        with progress, progress.follow(services.indexer):
            summary = await services.indexer.index_documents(
                source, beir_documents(data, source=source), on_progress=progress.on_progress)
    print(
        f"corpus: {summary.added} added, {summary.updated} updated, {summary.unchanged} unchanged, "
        f"{summary.removed} removed, {len(summary.failed)} failed ({summary.seconds:.1f} s)",
        file=sys.stderr,
    )


async def _with_progress(start, *, total: int | None, label: str = "evaluating"):
    """Run ``start(progress)`` with a progress bar on a terminal, else a line every ``every_s``."""
    if not sys.stderr.isatty():
        import time

        from bot import console

        count, last = 0, time.monotonic()

        def line(*_args) -> None:
            nonlocal count, last
            count += 1
            if time.monotonic() - last >= console.PROGRESS_EVERY_S:
                last = time.monotonic()
                print(f"{label}: {count}/{total or '?'} searches", file=sys.stderr, flush=True)

        return await start(line)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=total)
        count = 0

        def progress(*_args) -> None:
            nonlocal count
            count += 1
            bar.update(task, completed=count)

        return await start(progress)

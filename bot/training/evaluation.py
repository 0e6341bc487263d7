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


async def run_eval(args, settings: Settings) -> int:
    from search.evaluation import (
        evaluate,
        load_beir,
        load_questions,
        print_report,
        write_json,
    )

    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    if not modes:
        raise CliError("--mode needs at least one of bm25, dense, hybrid, rerank")
    if args.dataset is not None:
        data = load_beir(args.dataset, args.split)
        index_path = settings.data_dir / "eval" / f"{_safe(data.name)}.sqlite3"
        index_path.parent.mkdir(parents=True, exist_ok=True)
        services = _services(settings, index_path)
        queries, qrels, key, name, split = data.queries, data.qrels, (lambda h: h.doc_id), data.name, data.split
        sources = [_corpus_source(data.name)]
    else:
        questions = load_questions(args.questions, base_dir=Path.cwd())
        services = _services(settings, None)
        queries, qrels, key = questions.queries, questions.qrels, questions.key
        name, split, sources = args.questions.name, None, None
    async with services:
        if args.dataset is not None:
            await _index_corpus(services, data)
        if "rerank" in modes and services.reranker is None:
            raise CliError("mode rerank needs LOREBOT_SEARCH__RERANKER_MODEL; drop it from --mode")
        if args.max_queries:
            keep = list(queries)[: args.max_queries]
            queries = {q: queries[q] for q in keep}
            qrels = {q: qrels[q] for q in keep if q in qrels}
        await services.retriever.search("warm up", mode=modes[-1], k=1)  # load models first
        result = await _with_progress(
            lambda progress: evaluate(
                services.retriever, queries, qrels, modes, key=key, progress=progress,
                dataset=name, split=split, sources=sources,
            ),
            total=len(queries) * len(modes),
        )
    anchors = SCIFACT_ANCHORS if name.lower() == "scifact" else None
    print_report(result, anchors={m: a for m, a in (anchors or {}).items() if m in modes} or None)
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return EXIT_OK


def _services(settings: Settings, index_path: Path | None):
    from bot.runtime.services import build_services

    return build_services(settings, index_path=index_path, with_llm=False)


def _corpus_source(name: str) -> str:
    return f"eval:{name}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "dataset"


async def _index_corpus(services, data) -> None:
    """Index (or incrementally refresh) the dataset's own index: unchanged corpus, no embedding."""
    from search.evaluation import beir_documents

    source = _corpus_source(data.name)
    summary = await _with_progress(
        lambda progress: services.indexer.index_documents(
            source, beir_documents(data, source=source),
            on_progress=(lambda done, _t: progress("index", done, None)),
        ),
        total=None,
        label="indexing corpus",
    )
    print(
        f"corpus: {summary.added} added, {summary.updated} updated, {summary.unchanged} unchanged, "
        f"{summary.removed} removed, {len(summary.failed)} failed ({summary.seconds:.1f} s)",
        file=sys.stderr,
    )


async def _with_progress(start, *, total: int | None, label: str = "evaluating"):
    """Run ``start(progress)`` with a progress bar on a terminal, silently otherwise."""
    if not sys.stderr.isatty():
        return await start(lambda *_: None)
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

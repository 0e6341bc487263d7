"""The CLI commands. Each takes parsed args and returns an exit code."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bot.console import (
    EXIT_OK,
    EXIT_PARTIAL,
    CliError,
    IndexProgress,
    interrupt_notice,
    print_json,
)
from bot.settings import Settings

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def _services(settings: Settings | None = None, **kw):
    from bot.runtime.services import build_services

    return build_services(settings or Settings(), **kw)


async def index_paths(services, paths, *, source: str | None, include=None, exclude=None,
                      prune: bool = False,
                      show_progress: bool | None = False):
    """Index files and folders as one source; returns the summary.

    ``show_progress``: True, a live line on the terminal; None, a plain progress line every
    few seconds (logs, CI); False, nothing. Interrupted (Ctrl-C), it says whether the index was
    left unchanged (it always is unless the interrupt came during the commit) and re-raises.
    """
    from search.loaders import DEFAULT_EXCLUDES, discover, iter_documents

    name = source or _default_source_name(paths[0])
    files = discover(paths, include=include or ("**/*",), exclude=(*DEFAULT_EXCLUDES, *(exclude or ())))
    max_bytes = int(services.settings.search.max_file_mb * 1024 * 1024)
    items = iter_documents(files, source=name, max_bytes=max_bytes)
    async with interrupt_notice(services.index):
        if show_progress is False:
            return await services.indexer.index_documents(name, items, total=len(files), paths=paths,
                                                          prune=prune)
        progress = IndexProgress(f"indexing {name}", len(files), tty=bool(show_progress))
        with progress, progress.follow(services.indexer):
            return await services.indexer.index_documents(
                name, items, total=len(files), paths=paths, prune=prune,
                on_progress=progress.on_progress)


def _default_source_name(path: Path) -> str:
    resolved = path.expanduser().resolve()
    return (resolved.name if resolved.is_dir() else resolved.parent.name) or "default"


async def cmd_index(args) -> int:
    async with _services(with_llm=False) as services:
        summary = await index_paths(
            services, args.paths, source=args.source, include=args.include, exclude=args.exclude,
            prune=args.prune,
            show_progress=True if not args.json and sys.stderr.isatty() else None,
        )
    from bot.cli.register import register_indexed

    await register_indexed(services.settings, args.source or _default_source_name(args.paths[0]),
                           args.paths[0].expanduser().resolve())
    if args.json:
        print_json(summary.as_dict())
    else:
        _print_summary(summary)
    return EXIT_PARTIAL if summary.failed else EXIT_OK


def _print_summary(summary) -> None:
    print(
        f"added {summary.added}, updated {summary.updated}, unchanged {summary.unchanged}, "
        f"removed {summary.removed}, skipped {len(summary.failed)}; "
        f"{summary.chunks} chunks embedded in {summary.seconds:.1f} s"
    )
    for failure in summary.failed:
        print(f"  skipped {failure.path}: {failure.reason}")


async def cmd_search(args) -> int:
    _require_text(args.query, "query", 'lorebot search "hotel costs"')
    settings, index_kw, sources = Settings(), {}, args.sources
    if getattr(args, "dataset", None) is not None:
        settings, index_kw, sources = _dataset_search(settings, args)
    async with _services(settings, with_llm=False, **index_kw) as services:
        if args.mode == "rerank" and services.reranker is None:
            raise CliError("search mode 'rerank' needs a reranker: set "
                           "LOREBOT_SEARCH__RERANKER_MODEL or promote one with `lorebot finetune`")
        await _require_content(services, sources)
        hits = await services.retriever.search(args.query, mode=args.mode, k=args.k, sources=sources)
        mode = args.mode or services.retriever.default_mode
        # The weights RRF used for this query, and why (search.fusion_weights); None: no fusion.
        fusion = (services.retriever.fusion_for(args.query).as_dict()
                  if mode in ("hybrid", "rerank") else None)
    if args.json:
        print_json({"mode": mode, "fusion": fusion, "hits": [
            {"doc_id": h.doc_id, "title": h.title, "path": h.path, "url": h.url,
             "score": round(h.score, 6), "text": h.text}
            for h in hits
        ]})
        return EXIT_OK
    from bot.answer.pipeline import snippet

    if not hits:
        print("No matching passages.")
    for rank, h in enumerate(hits, 1):
        heading = " > ".join(h.headings)
        print(f"{rank}. {h.title}{' > ' + heading if heading else ''}  ({h.score:.4f})")
        print(f"   {h.location}")
        print(f"   {snippet(h.text)}")
    return EXIT_OK


def _dataset_search(settings: Settings, args):
    """Settings, index and sources to search the index `lorebot eval --dataset DIR` built."""
    from bot.training.evaluation import dataset_index

    if args.sources:
        raise CliError("--source and --dataset do not go together: a dataset's index holds "
                       "one source, its corpus")
    index_path, source = dataset_index(settings, args.dataset)
    if not index_path.is_file():
        raise CliError(f"no index for the dataset {args.dataset} at {index_path}; build it with "
                       f"`lorebot eval --dataset {args.dataset}` (same LOREBOT_DATA_DIR)")
    # An explicit index path is a SQLite file, whatever backend holds the knowledge base.
    return settings, {"index_path": index_path}, [source]


async def cmd_ask(args) -> int:
    _require_text(args.question, "question", 'lorebot ask "How do I add my documents?"')
    async with _services() as services:
        await _require_content(services)
        answer = await services.pipeline.answer(args.question)
    if args.json:
        print_json(answer_json(answer))
    else:
        print_answer(answer)
    return EXIT_OK


def answer_json(answer) -> dict:
    return {
        "answer": answer.text,
        "citations": [
            {"n": c.n, "title": c.title, "path": c.path, "url": c.url} for c in answer.citations
        ],
        "mode": answer.mode,
        # Why an answer is extractive or uncited (e.g. the LLM was down); None when all went well.
        "notice": answer.notice,
    }


def print_answer(answer, *, body: bool = True) -> None:
    if answer.notice:
        print(f"({answer.notice})")
    if body:
        print(answer.text)
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            print(f"  [{c.n}] {c.title} — {c.url or c.path}")


async def chat(services, *, prompt: str = "you> ") -> None:
    """Read questions from stdin until EOF or 'exit'; follow-ups see the earlier turns."""
    import asyncio

    from bot.answer.turns import Turn

    history: list = []
    print("Ask a question about the knowledge base (Ctrl-D or 'exit' to quit).")
    while True:
        try:
            question = (await asyncio.to_thread(input, prompt)).strip()
        except EOFError:
            print()
            return
        if question.lower() in {"exit", "quit"}:
            return
        if not question:
            continue
        final = None
        streamed = False
        async for part in services.pipeline.stream(question, history=tuple(history)):
            if isinstance(part, str):
                print(part, end="", flush=True)
                streamed = True
            else:
                final = part
        if streamed:
            print()
        print_answer(final, body=not streamed)
        print()
        history.append(Turn(question, final.text))


async def cmd_chat(args) -> int:
    async with _services() as services:
        await _require_content(services)
        await chat(services)
    return EXIT_OK


def _require_text(text: str, what: str, example: str) -> None:
    if not text.strip():
        raise CliError(f"the {what} is empty; for example: {example}")


def index_location(settings) -> str:
    """Where the knowledge base lives, and why there, for messages."""
    if settings.search.backend == "opensearch":
        return f"the OpenSearch index {settings.opensearch.index_prefix} at {settings.opensearch.url}"
    how = ("set by LOREBOT_DATA_DIR" if settings.data_dir_origin == "LOREBOT_DATA_DIR"
           else settings.data_dir_origin)
    return f"{settings.index_path} ({how})"


async def _require_content(services, sources=None) -> None:
    stats = await services.index.source_stats()
    if not stats:
        raise CliError(
            f"the knowledge base in {index_location(services.settings)} is empty: index your "
            "documents with `lorebot index PATH`, or try the sample with `lorebot demo`"
        )
    known = {s.source for s in stats}
    if missing := [name for name in sources or () if name not in known]:
        raise CliError(f"no such source: {', '.join(missing)} (indexed: {', '.join(sorted(known))})")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings: the embedded backend, whatever the knowledge base uses."""
    return settings.model_copy(update={
        "search": settings.search.model_copy(update={"backend": "sqlite"})})


def demo_index_path(settings: Settings) -> Path:
    """The demo's own index: the sample docs never enter the user's knowledge base."""
    return settings.data_dir / "demo" / "index.sqlite3"


async def cmd_demo(args) -> int:
    """The README's run command with no credentials: index the sample KB into the demo's own
    index (never the user's knowledge base), then chat or answer."""
    path = args.path or DOCS_DIR
    if not path.exists():
        raise CliError(f"sample knowledge base {path} not found; pass --path DIR")
    settings = demo_settings(Settings())
    demo_index = demo_index_path(settings)
    async with _services(settings, index_path=demo_index) as services:
        interactive = sys.stdin.isatty()
        print(f"Indexing the sample knowledge base in {path} into the demo index {demo_index} "
              "(your own knowledge base is not touched) …", file=sys.stderr)
        summary = await index_paths(services, [path], source="sample",
                                    show_progress=True if sys.stderr.isatty() else None)
        _print_summary(summary)
        mode = "an LLM" if services.llm else "extractive answers (no LLM configured)"
        print(f"Answering with {mode}. Your own documents: `lorebot index PATH`, then "
              "`lorebot chat`.\n")
        if interactive:
            await chat(services)
        else:
            print(f"Q: {args.question}\n")
            print_answer(await services.pipeline.answer(args.question))
    return EXIT_OK


async def cmd_eval(args) -> int:
    from bot.training.evaluation import run_eval

    return await run_eval(args, Settings())

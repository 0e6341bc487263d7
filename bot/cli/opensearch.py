"""`lorebot opensearch setup|migrate|status`: prepare a cluster, copy an embedded index into it.

Settings come from ``LOREBOT_OPENSEARCH__*`` (see .env.example); these commands talk to the
cluster whatever ``LOREBOT_SEARCH__BACKEND`` says, so a cluster can be prepared and filled
before the bot is switched over to it.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("opensearch", help="set up an OpenSearch cluster or copy the index into it")
    commands = p.add_subparsers(dest="opensearch_command", required=True, metavar="ACTION")

    s = commands.add_parser(
        "setup", help="create the index template, the first index and its alias (idempotent)"
    )
    s.add_argument("--dimension", type=int, metavar="N",
                   help="vector dimension (default: ask the configured embedding model)")
    s.add_argument("--fresh", action="store_true",
                   help="build a new empty index and move the alias to it (after a model "
                        "change; reindex every source afterwards)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_opensearch_setup)

    m = commands.add_parser(
        "migrate", help="copy the embedded SQLite index (documents, chunks, vectors) into "
                        "OpenSearch without re-embedding; readers switch when the copy is complete"
    )
    m.add_argument("--from", dest="source_path", type=Path, metavar="PATH",
                   help="the SQLite index file (default: index.sqlite3 in LOREBOT_DATA_DIR)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(handler=cmd_opensearch_migrate)

    st = commands.add_parser("status", help="the live index behind the alias, counts per source")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=cmd_opensearch_status)


def _settings():
    from bot.settings import Settings

    return Settings()


def _index(settings):
    from bot.runtime.factories import open_opensearch_index

    return open_opensearch_index(settings)


def _model_dimension(settings) -> int:
    from search.embedding import SentenceTransformerEmbedder

    s = settings.search
    return SentenceTransformerEmbedder(s.embedding_model, device=s.device).dim


async def cmd_opensearch_setup(args) -> int:
    """Template, first index and alias; `--fresh` swaps in a new empty index."""
    from bot.console import EXIT_OK, print_json

    settings = _settings()
    dimension = args.dimension or _model_dimension(settings)
    index = _index(settings)
    try:
        await index.open()
        live = await index.setup(dimension, fresh=args.fresh)
        info = await index.describe()
    finally:
        await index.close()
    result = {**info, "template": index.layout.template_name, "index": live}
    if args.json:
        print_json(result)
    else:
        print(f"OpenSearch at {result['url']}: alias '{result['alias']}' -> {live} "
              f"({result['dimension']}-dimensional vectors), template '{result['template']}'")
    return EXIT_OK


async def cmd_opensearch_migrate(args) -> int:
    """Copy the embedded index into a new physical index, then move the alias to it."""
    from bot.console import EXIT_OK, print_json
    from search.index.opensearch_migrate import migrate_sqlite

    settings = _settings()
    path = args.source_path or settings.index_path
    index = _index(settings)

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\rcopied {done}/{total} documents", end="", file=sys.stderr, flush=True)

    try:
        await index.open()
        summary = await migrate_sqlite(path, index, on_progress=progress)
    finally:
        await index.close()
        if not args.json and sys.stderr.isatty():
            print(file=sys.stderr)
    if args.json:
        print_json(summary.as_dict())
    else:
        print(f"copied {summary.documents} documents and {summary.chunks} chunks from {path} "
              f"into {summary.index} in {summary.seconds:.1f} s; alias '{summary.alias}' now "
              "points to it. Set LOREBOT_SEARCH__BACKEND=opensearch to use it.")
    return EXIT_OK


async def cmd_opensearch_status(args) -> int:
    """Where the alias points and what the index holds."""
    from bot.console import EXIT_OK, print_json

    settings = _settings()
    index = _index(settings)
    try:
        await index.open()
        info = await index.describe()
        stats = await index.source_stats() if info["index"] else []
    finally:
        await index.close()
    info["sources"] = [
        {"source": s.source, "documents": s.documents, "chunks": s.chunks} for s in stats
    ]
    if args.json:
        print_json(info)
        return EXIT_OK
    if not info["index"]:
        print(f"OpenSearch at {info['url']}: no alias '{info['alias']}' yet; run "
              "`lorebot opensearch setup` or index something")
        return EXIT_OK
    print(f"OpenSearch at {info['url']}: alias '{info['alias']}' -> {info['index']} "
          f"({info['dimension']}-dimensional vectors)")
    for s in info["sources"]:
        print(f"  {s['source']}: {s['documents']} documents, {s['chunks']} chunks")
    return EXIT_OK

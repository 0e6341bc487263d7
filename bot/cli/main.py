"""The `lorebot` command line. Imports stay lazy so `lorebot --help` is instant."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.cli.common import MODES, SAMPLE_QUESTION
from bot.console import EXIT_ERROR, CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorebot",
        description="Answers questions from your team's documents, with citations.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="index files and folders into the knowledge base")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--source", help="source name (default: the first path's name)")
    p.add_argument("--include", action="append", default=None, metavar="GLOB",
                   help="only files matching this glob (repeatable)")
    p.add_argument("--exclude", action="append", default=None, metavar="GLOB",
                   help="skip files matching this glob (repeatable)")
    p.add_argument("--prune", action="store_true",
                   help="also remove the source's documents outside these paths (default: only "
                        "those under them whose files are gone)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("search", help="show the passages that match a query")
    p.add_argument("query")
    p.add_argument("--mode", choices=MODES, help="default: rerank if a reranker is set, else hybrid")
    p.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    p.add_argument("--source", action="append", dest="sources", metavar="NAME",
                   help="search only this source (repeatable)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("question")
    p.add_argument("--json", action="store_true")

    sub.add_parser("chat", help="a terminal chat; follow-up questions keep the context")

    p = sub.add_parser("demo", help="index the sample knowledge base, then chat (or answer once)")
    p.add_argument("--path", type=Path, help="knowledge base to index (default: lorebot's docs)")
    p.add_argument("--question", default=SAMPLE_QUESTION,
                   help="asked when stdin is not a terminal")

    # Each feature registers its own subcommands in its own module, to keep this file small;
    # they import nothing heavy at the top, so `lorebot --help` stays instant.
    from bot.cli import eval as cli_eval
    from bot.cli import finetune, opensearch, qa, slack, sources

    for module in (cli_eval, slack, opensearch, finetune, sources, qa):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        _quiet_third_party()
    handler = getattr(args, "handler", None)
    if handler is None:
        from bot.cli import commands

        handler = getattr(commands, f"cmd_{args.command}")
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every known failure becomes one readable line
        from search.errors import SearchError

        if isinstance(exc, (CliError, SearchError)):
            print(f"lorebot: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        raise


def _quiet_third_party() -> None:
    import os
    import warnings

    # Model loading prints progress bars and hub warnings that mean nothing offline.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)


if __name__ == "__main__":
    sys.exit(main())

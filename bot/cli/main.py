"""The `lorebot` command line. Imports stay lazy so `lorebot --help` is instant."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from bot.cli.common import MODES, SAMPLE_QUESTION, positive_int
from bot.console import EXIT_CRASH, EXIT_ERROR, CliError, print_error

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorebot",
        description="Answers questions from your team's documents, with citations.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="index files and folders into the knowledge base")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="files and folders to index (folders recursively)")
    p.add_argument("--source", help="source name (default: the first path's name)")
    p.add_argument("--include", action="append", default=None, metavar="GLOB",
                   help="only files matching this glob (repeatable)")
    p.add_argument("--exclude", action="append", default=None, metavar="GLOB",
                   help="skip files matching this glob (repeatable)")
    p.add_argument("--prune", action="store_true",
                   help="also remove the source's documents not indexed by this run (outside "
                        "these paths, or excluded); default: only those under them whose files "
                        "are gone")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("search", help="show the passages that match a query")
    p.add_argument("query", help="what to search for, in quotes")
    p.add_argument("--mode", choices=MODES, help="default: rerank if a reranker is set, else hybrid")
    p.add_argument("-k", type=positive_int, default=5, help="number of hits (default 5)")
    p.add_argument("--source", action="append", dest="sources", metavar="NAME",
                   help="search only this source (repeatable)")
    p.add_argument("--dataset", type=Path, metavar="DIR",
                   help="search the index `lorebot eval --dataset DIR` built for this dataset, "
                        "not the knowledge base")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")

    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")

    sub.add_parser("chat", help="a terminal chat; follow-up questions keep the context")

    p = sub.add_parser("demo", help="index the sample knowledge base, then chat (or answer once)")
    p.add_argument("--path", type=Path, help="knowledge base to index (default: lorebot's docs)")
    p.add_argument("--question", default=SAMPLE_QUESTION,
                   help="asked when stdin is not a terminal")

    # Each feature registers its own subcommands in its own module, to keep this file small;
    # they import nothing heavy at the top, so `lorebot --help` stays instant.
    from bot.cli import eval as cli_eval
    from bot.cli import finetune, lark, opensearch, qa, slack, sources

    for module in (cli_eval, slack, lark, opensearch, finetune, sources, qa):
        module.add_parser(sub)
    _every_subcommand(parser)
    return parser


def _subparsers(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _every_subcommand(parser: argparse.ArgumentParser) -> None:
    """What each subcommand gets without its module asking: `-v` after the subcommand too, and
    its one-line help as the description of its own --help."""
    for action in _subparsers(parser):
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, child in action.choices.items():
            if child.description is None and helps.get(name):
                child.description = helps[name][:1].upper() + helps[name][1:] + "."
            if not any("-v" in a.option_strings for a in child._actions):
                child.add_argument("-v", "--verbose", action="store_true",
                                   default=argparse.SUPPRESS, help="log what happens")
            _every_subcommand(child)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, reporting an unknown flag with the usage of the subcommand it was given to."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        target = parser
        while actions := _subparsers(target):
            chosen = getattr(args, actions[0].dest, None)
            if chosen not in actions[0].choices:
                break
            target = actions[0].choices[chosen]
        target.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if code == EXIT_INTERRUPTED and argv is None:
        # A real process after Ctrl-C: everything that matters is closed (an index run rolled
        # back), but Python would wait at exit for the model thread to finish its batch, which
        # cannot be interrupted (seconds to minutes). Exit now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    args = parse_args(build_parser(), argv)
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
    as_json = getattr(args, "json", None) is True  # eval's --json names a file
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        message = _readable(exc)
        if message is None:
            # A bug, not a mistake of the user's: its own exit code (1 means "some files
            # skipped"), the traceback in the log, one line on the terminal.
            logging.getLogger("lorebot").error("Crashed", exc_info=exc)
            print_error(f"internal error ({type(exc).__name__}: {exc}); this is a bug: the "
                        "traceback is above, please report it", as_json=as_json)
            return EXIT_CRASH
        print_error(message, as_json=as_json)
        return EXIT_ERROR


def _readable(exc: Exception) -> str | None:
    """The one-line message for a failure the user can fix; None: a bug (the traceback shows)."""
    from pydantic import ValidationError

    from bot.settings import SettingsError
    from search.errors import ModelError, SearchError

    if isinstance(exc, ModelError) and (device := _device_problem()):
        return device
    if isinstance(exc, (CliError, SearchError, SettingsError)):
        return str(exc)
    if isinstance(exc, ValidationError):  # settings built in code from a bad value
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return None


def _device_problem() -> str | None:
    """Why the configured torch device cannot work here, if that is the problem."""
    from bot.settings import Settings

    try:
        device = Settings().search.device
    except Exception:  # noqa: BLE001 - the settings were fine when the command started
        return None
    kind = device.split(":")[0].lower()
    if kind == "cpu":
        return None
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        return (f"LOREBOT_SEARCH__DEVICE={device} is not a torch device; use cpu, cuda (or "
                "cuda:N) or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        why = ("this torch is built without CUDA" if torch.version.cuda is None
               else "no CUDA GPU is visible")
    elif kind == "mps" and not torch.backends.mps.is_available():
        why = "MPS (Apple GPU) is not available"
    else:
        return None
    return (f"LOREBOT_SEARCH__DEVICE={device}, but {why} on this machine; set "
            "LOREBOT_SEARCH__DEVICE=cpu (or leave it unset)")


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

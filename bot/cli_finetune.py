"""`lorebot finetune KIND` and `lorebot models`: parsers here, the work in bot.finetune_command."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a retrieval model; promote it only if it wins")
    p.add_argument("kind", choices=("adapter", "reranker", "embedder"),
                   help="adapter: query adapter (seconds); reranker: cross-encoder (minutes); "
                   "embedder: the embedding model (minutes; promoting it re-embeds the index)")
    p.add_argument("--dataset", type=Path, metavar="DIR",
                   help="a BEIR dataset (default: the live index and feedback.jsonl)")
    p.add_argument("--split", default="train", help="qrels split to train and validate on "
                   "(default train; never train on test)")
    p.add_argument("--epochs", type=int, metavar="N", help="default: LOREBOT_FINETUNE__*_EPOCHS")
    p.add_argument("--max-steps", type=int, metavar="N", help="stop after N training steps")
    p.add_argument("--force", action="store_true", help="promote even if the gate refuses")
    p.add_argument("--json", action="store_true",
                   help="print {candidate, kind, before, after, promoted} as JSON")
    p.set_defaults(handler=_finetune)

    p = sub.add_parser("models", help="fine-tuned models, and which is active per kind")
    p.add_argument("action", nargs="?", choices=("list", "rollback", "promote"), default="list")
    p.add_argument("target", nargs="?", metavar="KIND|ID",
                   help="rollback: the kind (embedder, adapter, reranker); promote: a candidate id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_models)


async def _finetune(args) -> int:
    from bot.finetune_command import run_finetune

    return await run_finetune(args)


async def _models(args) -> int:
    from bot.finetune_command import run_models

    return await run_models(args)

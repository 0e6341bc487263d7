"""`lorebot finetune KIND` and `lorebot models`: the parsers and what they print; the work is in
bot.training.finetune."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bot.console import EXIT_OK, CliError, print_json

if TYPE_CHECKING:
    from bot.settings import Settings


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a retrieval model; promote it only if it wins")
    p.add_argument("kind", choices=("adapter", "reranker", "embedder"),
                   help="adapter: query adapter (seconds); reranker: cross-encoder (minutes); "
                   "embedder: the embedding model (minutes; promoting it re-embeds the index)")
    p.add_argument("--dataset", type=Path, metavar="DIR",
                   help="a BEIR dataset (default: the live index and feedback.jsonl)")
    p.add_argument("--split", default="train", help="qrels split to train and validate on "
                   "(default train; never train on test)")
    p.add_argument("--questions", type=Path, metavar="FILE",
                   help="with --dataset: train and gate on these questions (qa.jsonl format, "
                   "e.g. from `lorebot qa generate --dataset DIR`) instead of the dataset's qrels")
    p.add_argument("--epochs", type=int, metavar="N", help="default: LOREBOT_FINETUNE__*_EPOCHS")
    p.add_argument("--max-steps", type=int, metavar="N", help="stop after N training steps")
    p.add_argument("--force", action="store_true", help="promote even if the gate refuses")
    p.add_argument("--json", action="store_true",
                   help="print {candidate, kind, before, after, guard, gate, promoted, "
                   "training_seconds} as JSON")
    p.set_defaults(handler=run_finetune)

    p = sub.add_parser("models", help="fine-tuned models, and which is active per kind")
    p.add_argument("action", nargs="?", choices=("list", "rollback", "promote"), default="list")
    p.add_argument("target", nargs="?", metavar="KIND|ID",
                   help="rollback: the kind (embedder, adapter, reranker); promote: a candidate id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_models)


async def run_finetune(args, settings: Settings | None = None) -> int:
    from bot.settings import Settings
    from bot.training.finetune import RESULT_KEYS, finetune

    settings = settings or Settings()
    if getattr(args, "questions", None) is not None and args.dataset is None:
        raise CliError("--questions needs --dataset DIR (the corpus they are about); without a "
                       "dataset, `lorebot finetune` reads the data dir's qa.jsonl by itself")
    say = None if args.json else (lambda text: print(text, file=sys.stderr))
    result = await finetune(settings, args.kind, dataset=args.dataset, split=args.split,
                            epochs=args.epochs, max_steps=args.max_steps, force=args.force,
                            say=say, questions=getattr(args, "questions", None))
    if args.json:
        # A reranker's fitted blend, an adapter's or embedder's fitted dense weight, if any.
        fitted = ("blend", "dense_factor", "dense_factor_fit")
        print_json({k: result[k] for k in (*RESULT_KEYS, *fitted) if k in result})
    else:
        from bot.jobs.training import gate_table, verdict_text

        print(gate_table(result))
        print(f"{result['candidate']}: {verdict_text(result)}")
    return EXIT_OK


async def run_models(args, settings: Settings | None = None) -> int:
    from bot.runtime.factories import model_registry
    from bot.settings import Settings
    from search.finetune.registry import KINDS

    settings = settings or Settings()
    registry = model_registry(settings)
    if args.action == "rollback":
        if args.target not in KINDS:
            raise CliError(f"rollback needs a kind: {', '.join(KINDS)}")
        if args.target == "embedder":  # the index goes back to the previous model's vectors
            from bot.training.promotion import rollback_embedder

            now = await rollback_embedder(settings, registry)
        else:
            now = registry.rollback(args.target)
        print(f"{args.target}: {now.id if now else 'base model'} is active now")
        return EXIT_OK
    if args.action == "promote":
        if not args.target:
            raise CliError("promote needs a candidate id (see `lorebot models`)")
        if registry.get(args.target).kind == "embedder":  # re-embeds the index first
            from bot.training.promotion import promote_embedder

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

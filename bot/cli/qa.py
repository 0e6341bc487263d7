"""`lorebot qa generate` and `lorebot export sft`: parsers here, the work in bot.training.qa and
bot.training.sft."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def add_parser(sub) -> None:
    p = sub.add_parser("qa", help="synthetic question/answer pairs for fine-tuning")
    actions = p.add_subparsers(dest="qa_action", required=True, metavar="ACTION")
    g = actions.add_parser(
        "generate", help="questions about sampled chunks (from the LLM, or pseudo-questions "
        "without one); write qa.jsonl",
        description="Samples indexed chunks (seeded), asks the configured LLM for questions "
        "each chunk answers, drops trivial, duplicate and unanswerable ones and writes the rest "
        "as JSONL. `lorebot finetune` without --dataset trains on the data dir's qa.jsonl.")
    g.add_argument("--per-chunk", type=_positive, metavar="N",
                   help="questions per chunk (default LOREBOT_FINETUNE__QA_PER_CHUNK)")
    g.add_argument("--max-chunks", type=_positive, metavar="N",
                   help="chunks sampled (default LOREBOT_FINETUNE__QA_MAX_CHUNKS)")
    g.add_argument("--source", action="append", metavar="NAME",
                   help="only chunks of this source (repeatable)")
    g.add_argument("--out", type=Path, metavar="FILE",
                   help="where to write (default DATA_DIR/qa.jsonl, which fine-tuning reads)")
    g.add_argument("--no-llm", action="store_true",
                   help="pseudo-questions from the documents themselves, no language model "
                   "(also what happens when none is configured)")
    g.add_argument("--kind", choices=("sentence", "title", "both"),
                   help="with no LLM: a sentence asks for its passage, a heading or title for "
                   "its section, or both (default LOREBOT_FINETUNE__QA_PSEUDO_KIND)")
    g.add_argument("--dataset", type=Path, metavar="DIR",
                   help="sample the index `lorebot eval --dataset DIR` built, not the live one")
    g.add_argument("--json", action="store_true", help="print the counts as JSON")
    g.set_defaults(handler=_qa_generate)

    p = sub.add_parser("export", help="export training data")
    formats = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    s = formats.add_parser(
        "sft", help="well-rated answers as OpenAI chat fine-tuning JSONL",
        description="Writes helpful-rated answers that cited sources as "
        '{"messages": [system, user, assistant]} lines, with the prompt the bot uses.')
    s.add_argument("--out", type=Path, metavar="FILE", help="default DATA_DIR/sft.jsonl")
    s.add_argument("--min-rating", default="helpful",
                   choices=("helpful", "not_helpful", "wrong_source"),
                   help="keep this rating and better ones (default helpful)")
    s.add_argument("--submit", action="store_true",
                   help="upload the file and start a fine-tuning job through the LLM API")
    s.add_argument("--model", metavar="M", help="base model to fine-tune (default LLM__MODEL)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(handler=_export_sft)


async def _qa_generate(args) -> int:
    from bot.training.qa import run_qa_generate

    return await run_qa_generate(args)


async def _export_sft(args) -> int:
    from bot.training.sft import run_export_sft

    return await run_export_sft(args)

"""`lorebot export sft`: well-rated answers as OpenAI chat fine-tuning data, and `--submit`.

Each kept answer becomes ``{"messages": [system, user, assistant]}``: the bot's own system prompt,
the user message the bot builds (numbered ``<source>`` blocks, then the question, see
:mod:`bot.answer.prompts`), and the answer as the user saw it. Feedback records keep the cited sources'
titles and locations but not the passages, so the passages are read back from the index: the
chunks of each cited document that share the most words with the question and the answer. The
sources are exactly the cited ones, numbered as the answer cites them.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from bot.console import EXIT_OK, CliError, print_json
from bot.settings import Settings
from bot.training.qa import write_jsonl

SFT_FILE = "sft.jsonl"
# OpenAI refuses a fine-tuning file with fewer examples than this.
MIN_EXAMPLES = 10
# Worst to best; --min-rating R keeps R and every better rating.
RATING_ORDER = ("wrong_source", "not_helpful", "helpful")
PASSAGES_PER_SOURCE = 2
REDACTED = "[redacted]"
# Credentials that could have been pasted into a question or quoted in an answer.
_TOKEN_PATTERNS = re.compile(
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}|\bxapp-[A-Za-z0-9-]{10,}|\bsk-[A-Za-z0-9_-]{16,}"
)


def secrets_of(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Every configured secret value, longest first, to scrub from exported text."""
    from urllib.parse import urlsplit

    values = [settings.llm.api_key, settings.slack.bot_token, settings.slack.signing_secret,
              settings.slack.app_token, settings.opensearch.password]
    found = {v.get_secret_value() for v in values if v is not None}
    if settings.redis.url is not None:  # only the password of a redis://user:pass@host URL
        found.add(urlsplit(settings.redis.url.get_secret_value()).password or "")
    found |= {environ.get(name, "") for name in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY")}
    return sorted((s for s in found if len(s) >= 6), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return _TOKEN_PATTERNS.sub(REDACTED, text)


def _passages(index_path: Path, ref: Mapping, words: set[str], budget: int):
    """The prompt source for a cited source ``ref``, or None when its document is gone."""
    from bot.answer.prompts import PromptSource, estimate_tokens, truncate_to_tokens
    from search.finetune.qa import tokens
    from search.index.chunk_reader import iter_document_chunks
    from search.models import Hit

    chunks = list(iter_document_chunks(index_path, path=ref.get("path"), url=ref.get("url"),
                                       title=ref.get("title")))
    if not chunks:
        return None
    # Most shared words first (the order a retriever would rank them in), document order on ties.
    ranked = sorted(chunks, key=lambda c: -len(words & set(tokens(c.text))))
    best = ranked[:PASSAGES_PER_SOURCE]
    each = max(32, budget // len(best))
    texts = tuple(truncate_to_tokens(c.text, each, estimate_tokens) for c in best)
    top = best[0]
    hit = Hit(chunk_id=top.chunk_id, doc_id=top.doc_id, source=top.source, title=top.title,
              text=texts[0], score=0.0, headings=top.headings, path=top.path, url=top.url)
    return PromptSource(int(ref.get("n") or 1), hit, texts)


def build_examples(
    records: Iterable[Mapping], index_path: Path, *, min_rating: str = "helpful",
    context_tokens: int = 6000, secrets: Sequence[str] = (),
) -> tuple[list[dict], Counter]:
    """Fine-tuning examples from feedback records, and why the others were skipped."""
    from bot.answer.prompts import build_answer_messages
    from search.finetune.qa import tokens

    floor = RATING_ORDER.index(min_rating)
    examples: list[dict] = []
    skipped: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    for rec in records:
        answer = rec.get("answer") or {}
        rating = rec.get("rating")
        if rating not in RATING_ORDER or RATING_ORDER.index(rating) < floor:
            skipped["rating"] += 1
            continue
        question = (answer.get("question") or "").strip()
        text = (answer.get("answer") or "").strip()
        refs = sorted(answer.get("sources") or (), key=lambda r: r.get("n") or 0)
        if not question or not text:
            skipped["no_answer"] += 1
            continue
        if not refs:
            skipped["no_sources"] += 1
            continue
        if answer.get("mode", "llm") != "llm":  # extractive quotes are not a model's answer
            skipped["not_llm"] += 1
            continue
        if (question, text) in seen:
            skipped["duplicate"] += 1
            continue
        words = set(tokens(question + " " + text))
        sources = [_passages(index_path, r, words, context_tokens // len(refs)) for r in refs]
        if any(s is None for s in sources):
            skipped["source_gone"] += 1
            continue
        seen.add((question, text))
        # Built exactly as the bot builds it, rewritten follow-ups included.
        query = (answer.get("query") or "").strip() or question
        messages = [*build_answer_messages(query, sources, asked_as=question),
                    {"role": "assistant", "content": text}]
        examples.append({"messages": [{"role": m["role"], "content": scrub(m["content"], secrets)}
                                      for m in messages]})
    return examples, skipped


async def run_export_sft(args, settings: Settings | None = None) -> int:
    from bot.state.feedback import read_feedback

    settings = settings or Settings()
    if settings.search.backend != "sqlite":
        raise CliError("export sft reads cited passages from the embedded SQLite index; it "
                       "cannot read an OpenSearch index yet (LOREBOT_SEARCH__BACKEND=opensearch)")
    out = args.out or settings.data_dir / SFT_FILE
    records = read_feedback(settings.data_dir / "feedback.jsonl")
    examples, skipped = await asyncio.to_thread(
        build_examples, records, settings.index_path, min_rating=args.min_rating,
        context_tokens=settings.llm.context_tokens, secrets=secrets_of(settings))
    await asyncio.to_thread(write_jsonl, out, examples)
    result: dict = {"out": str(out), "examples": len(examples), "feedback": len(records),
                    "skipped": dict(skipped)}
    if not args.json:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "none"
        print(f"wrote {len(examples)} examples from {len(records)} feedback records to {out} "
              f"(skipped: {why})")
    if args.submit:
        result["job"] = await submit(settings, out, len(examples), model=args.model)
        if not args.json:
            job = result["job"]
            print(f"fine-tuning job {job['id']} ({job['status']}) on {job['model']}, "
                  f"training file {job['training_file']}")
    if args.json:
        print_json(result)
    return EXIT_OK


async def submit(settings: Settings, path: Path, count: int, *, model: str | None) -> dict:
    """Upload ``path`` and start a fine-tuning job through the configured OpenAI client."""
    import httpx2
    import openai

    from bot.answer.llm import LLMConfigError, build_llm

    try:
        llm = build_llm(settings.llm)
    except LLMConfigError as exc:
        raise CliError(f"{exc} (the training file {path} was written)") from exc
    if llm is None:
        raise CliError("--submit needs the OpenAI API: set LOREBOT_LLM__MODEL and "
                       "LOREBOT_LLM__API_KEY (or OPENAI_API_KEY); the training file "
                       f"{path} was written and can be uploaded by hand")
    try:
        if count < MIN_EXAMPLES:
            raise CliError(f"fine-tuning needs at least {MIN_EXAMPLES} examples and {path} has "
                           f"{count}; collect more helpful feedback first")
        client, base = llm.openai_client, model or llm.model
        step = "uploading the training file"
        try:
            uploaded = await client.files.create(
                file=(path.name, path.read_bytes(), "application/jsonl"), purpose="fine-tune")
            step = f"starting the job (file {uploaded.id} was uploaded)"
            job = await client.fine_tuning.jobs.create(
                training_file=uploaded.id, model=base, suffix="lorebot")
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise CliError(f"fine-tuning failed while {step}: {llm.describe_error(exc)}") from exc
    finally:
        await llm.aclose()
    return {"id": job.id, "status": job.status, "model": job.model, "training_file": uploaded.id}



"""`/lorebot finetune` and `/lorebot models`: train a retrieval model from Slack, list models.

``finetune adapter|reranker|embedder [dataset=DIR] [--force] [epochs=N] [max_steps=N]`` (admins)
queues a training job (bot.jobs.training) and posts its progress message here; the worker
updates it with the phase, then the before/after table and the verdict. ``models`` lists the
active models and the candidates (everyone); ``models promote ID`` and ``models rollback KIND``
are for admins. The admin check for ``finetune`` is done by ``handlers.admin.handle``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.queue import Job
from bot.jobs.texts import job_text
from bot.jobs.training import MODEL_KINDS
from handlers.access import audit, refusal
from handlers.render import shown

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

FINETUNE_USAGE = ("Usage: `/lorebot finetune adapter|reranker|embedder [dataset=DIR] "
                  "[questions=FILE] [--force] [epochs=N] [max_steps=N]`: without `dataset=`, "
                  "trains on the live index with the feedback and generated questions")
MODELS_USAGE = ("Usage: `/lorebot models`, `/lorebot models promote ID`, "
                "`/lorebot models rollback KIND`")
# Slack clients may turn "--" into an em or en dash.
FORCE = frozenset({"--force", "force", "\u2014force", "\u2013force"})
SHOWN_CANDIDATES = 10


def parse_finetune(args: list[str]) -> tuple[str, dict] | str:
    """(model kind, job params), or the usage/error text to answer with."""
    if not args or args[0].lower() not in MODEL_KINDS:
        return FINETUNE_USAGE
    params: dict = {"force": False}
    for arg in args[1:]:
        key, eq, value = arg.partition("=")
        if arg.lower() in FORCE:
            params["force"] = True
        elif eq and key.lower() in ("dataset", "questions") and value:
            params[key.lower()] = value.strip("<>")
        elif eq and key.lower() in ("epochs", "max_steps", "steps") and value.isdigit() \
                and int(value) > 0:
            params["max_steps" if key.lower() == "steps" else key.lower()] = int(value)
        else:
            return f"I don't understand `{shown(arg, 100)}`. {FINETUNE_USAGE}"
    return args[0].lower(), params


async def finetune(bot: SlackBot, client: AsyncWebClient, ack, user: str, channel: str,
                   args: list[str]) -> None:
    """Queue a training job (the caller checked that ``user`` is an admin)."""
    parsed = parse_finetune(args)
    if isinstance(parsed, str):
        await ack(text=parsed, response_type="ephemeral")
        return
    kind, params = parsed
    if "dataset" in params:
        path = Path(params["dataset"]).expanduser()
        if not await asyncio.to_thread(path.is_dir):
            await ack(text=f":warning: There is no directory `{shown(params['dataset'])}` on the bot's "
                      "host. Name a BEIR dataset directory (corpus.jsonl, queries.jsonl, "
                      "qrels/train.tsv), or leave `dataset=` out to train on the live index.",
                      response_type="ephemeral")
            return
        params["dataset"] = str(path.resolve())
    audit("/lorebot finetune", user=user, outcome="done", channel=channel, kind=kind,
          params=params)
    await ack(text=f"Fine-tuning the *{kind}*; progress and the before/after table are posted "
              "here.", response_type="ephemeral")
    pending = Job(id="-", source=kind, kind="finetune", params=params, requested_by=user)
    message_ts = None
    try:
        posted = await client.chat_postMessage(channel=channel, text=job_text(pending))
        message_ts = posted["ts"]
    except SlackApiError as exc:
        logger.info("Cannot post progress in %s (%s)", channel, exc.response.get("error"))
    job, created = await bot.jobs.enqueue(kind, kind="finetune", params=params, requested_by=user,
                                          channel=channel if message_ts else None,
                                          message_ts=message_ts)
    if not created and message_ts:
        await client.chat_update(
            channel=channel, ts=message_ts,
            text=f"One model trains at a time: the *{job.source}* is already {job.state} "
                 f"(job {job.id}). Try again when it has finished.")


async def models(bot: SlackBot, ack, user: str, channel: str, args: list[str],
                 admin: bool) -> None:
    """List models (everyone); promote or roll back (admins)."""
    from bot.runtime.factories import model_registry

    registry = model_registry(bot.settings)
    action = args[0].lower() if args else "list"
    if action == "list":
        await ack(text=await asyncio.to_thread(models_text, registry), response_type="ephemeral")
        return
    if action not in ("promote", "rollback") or len(args) != 2:
        await ack(text=MODELS_USAGE, response_type="ephemeral")
        return
    if not admin:
        audit("/lorebot models", user=user, outcome="refused", reason="not an admin",
              channel=channel, args=args)
        await ack(text=refusal(f"models {action}"), response_type="ephemeral")
        return
    from search.finetune.registry import RegistryError

    target = args[1]
    try:
        text = await asyncio.to_thread(_change, registry, action, target)
    except RegistryError as exc:
        await ack(text=f":warning: {shown(str(exc), 3000)}", response_type="ephemeral")
        return
    audit("/lorebot models", user=user, outcome="done", channel=channel, verb=action,
          target=target)
    await ack(text=text, response_type="ephemeral")


def _change(registry, action: str, target: str) -> str:
    from search.finetune.registry import RegistryError

    kind = target if action == "rollback" else registry.get(target).kind
    if kind == "embedder":
        # Re-embeds the whole index: a long CPU job, not something to run in the bot.
        verb = f"promote {target}" if action == "promote" else "rollback embedder"
        raise RegistryError(f"{action} of an embedder re-embeds the index; run "
                            f"`lorebot models {verb}` on the bot's host (running bots switch "
                            "to it by themselves once it is done)")
    if action == "rollback":
        if kind not in MODEL_KINDS:
            raise RegistryError(f"rollback needs a kind: {', '.join(MODEL_KINDS)}")
        now = registry.rollback(kind)
        return (f"The *{kind}* is rolled back: {f'`{now.id}`' if now else 'the base model'} is "
                "active now; running bots use it from their next question.")
    cand = registry.promote(target)
    return (f"`{cand.id}` is the active *{cand.kind}* now (promoted by hand); running bots use "
            "it from their next question.")


def models_text(registry) -> str:
    """Active model per kind, then the latest candidates with their validation scores."""
    from search.finetune.registry import KINDS

    active = {k: registry.active(k) for k in KINDS}
    lines = ["*Active models*"]
    for kind in KINDS:
        lines.append(f"• {kind}: {f'`{active[kind].id}`' if active[kind] else 'the base model'}")
    cands = registry.candidates()
    if not cands:
        lines.append("No fine-tuned candidates yet. An admin can train one with "
                     "`/lorebot finetune adapter|reranker|embedder`.")
        return "\n".join(lines)
    latest = cands[-SHOWN_CANDIDATES:]
    more = f" (the latest {len(latest)} of {len(cands)})" if len(cands) > len(latest) else ""
    lines.append(f"*Candidates*{more}")
    for c in latest:
        val = (c.metrics or {}).get("validation", {})
        b, a = val.get("before", {}).get("ndcg@10"), val.get("after", {}).get("ndcg@10")
        score = (f"validation nDCG@10 {b:.4f} → {a:.4f}" if a is not None and b is not None
                 else "not gated")
        mark = " *(active)*" if active.get(c.kind) and active[c.kind].id == c.id else ""
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(c.created))
        lines.append(f"• `{c.id}`{mark}: {c.kind}, {when}, {score}")
    return "\n".join(lines)

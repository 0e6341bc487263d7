"""Source administration under ``/lorebot``: sources, add, remove, reindex, status, channel,
help (finetune and models: ``handlers.training``). Listing is open to everyone; changes are for
admins (``LOREBOT_SLACK__ADMIN_USERS``, and workspace admins when
``LOREBOT_SLACK__WORKSPACE_ADMINS_ARE_ADMINS`` is true). Every admin action is logged with the
user who did it (logger ``lorebot.audit``).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.queue import Job
from bot.jobs.texts import job_text
from bot.sources.registry import Source, SourceRegistryError, default_name, guess_type
from handlers import training
from handlers.access import audit, is_admin, refusal

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

SUBCOMMANDS = frozenset({"sources", "add", "remove", "reindex", "status", "channel", "help",
                         "finetune", "models"})
CHANGING = frozenset({"add", "remove", "reindex", "channel", "finetune"})
REMOVE_CONFIRM = "lorebot_source_remove_confirm"
REMOVE_CANCEL = "lorebot_source_remove_cancel"

HELP = (
    "*lorebot* answers questions from the team's documents, with citations.\n"
    "• `/lorebot ask QUESTION`: answer a question here\n"
    "• `/lorebot sources`: the knowledge sources searchable here\n"
    "• `/lorebot status`: running and recent jobs\n"
    "• `/lorebot models`: the retrieval models in use and the fine-tuned candidates\n"
    "• `/lorebot help`: this help\n"
    "Admins only:\n"
    "• `/lorebot add URL_OR_PATH [NAME] [private]`: add a web site (page, sitemap or crawl) "
    "or a folder, and index it; `/lorebot add #channel` indexes a channel's messages "
    "(searchable in that channel only, until allowed elsewhere)\n"
    "• `/lorebot add files #channel [NAME]`: index the files shared in a channel (searchable "
    "there only, until allowed elsewhere); in a DM with me, `/lorebot add files [NAME]` indexes "
    "the files you share with me there\n"
    "• `/lorebot remove NAME`: remove a source and its documents (asks to confirm)\n"
    "• `/lorebot reindex [NAME|all]`: reindex now\n"
    "• `/lorebot channel allow|deny NAME`: search a restricted source in this channel, or stop\n"
    "• `/lorebot finetune adapter|reranker|embedder [dataset=DIR] [--force]`: train a retrieval "
    "model on the live index and feedback (or a BEIR dataset directory on the bot's host) and "
    "promote it if it beats the active one; the before/after table is posted here\n"
    "• `/lorebot models promote ID` / `/lorebot models rollback KIND`: switch models by hand"
)


def register(app: AsyncApp, bot: SlackBot) -> None:
    """The remove confirmation buttons (the subcommands come through ``handlers.commands``)."""

    @app.action(REMOVE_CONFIRM)
    async def on_confirm(ack, body: dict, action: dict, client: AsyncWebClient, respond) -> None:
        await ack()
        user = body["user"]["id"]
        if not await is_admin(bot, client, user):
            await respond(text=refusal("remove"), response_type="ephemeral",
                          replace_original=False)
            return
        await respond(text=await _remove(bot, user, action["value"]), replace_original=True)

    @app.action(REMOVE_CANCEL)
    async def on_cancel(ack, respond) -> None:
        await ack()
        await respond(text="Nothing removed.", replace_original=True)


async def handle(bot: SlackBot, client: AsyncWebClient, ack, command: dict, sub: str,
                 rest: str) -> None:
    """Answer one admin subcommand (ephemeral, through the slash command's ack)."""
    user, channel = command["user_id"], command["channel_id"]
    args = rest.split()
    if sub == "help":
        await ack(text=HELP, response_type="ephemeral")
        return
    admin = await is_admin(bot, client, user)
    if sub in CHANGING and not admin:
        audit.warning("Refused /lorebot %s %s for non-admin %s in %s", sub, rest, user, channel)
        await ack(text=refusal(sub), response_type="ephemeral")
        return
    try:
        if sub == "sources":
            await ack(text=await _sources_text(bot, channel, admin), response_type="ephemeral")
        elif sub == "status":
            await ack(text=await _status_text(bot), response_type="ephemeral")
        elif sub == "add":
            await _add(bot, client, ack, user, channel, args)
        elif sub == "remove":
            await _confirm_remove(bot, ack, args)
        elif sub == "reindex":
            await _reindex(bot, client, ack, user, channel, args)
        elif sub == "channel":
            await _channel(bot, ack, user, channel, args)
        elif sub in ("finetune", "models"):
            if sub == "finetune":
                await training.finetune(bot, client, ack, user, channel, args)
            else:
                await training.models(bot, ack, user, channel, args, admin)
    except SourceRegistryError as exc:
        await ack(text=f":warning: {exc}", response_type="ephemeral")


async def _sources_text(bot: SlackBot, channel: str, admin: bool) -> str:
    registered = await bot.sources.list()
    counts: dict[str, tuple[int, int]] = {}
    index = getattr(getattr(bot.pipeline, "retriever", None), "index", None)
    if index is not None and hasattr(index, "source_stats"):
        counts = {s.source: (s.documents, s.chunks) for s in await index.source_stats()}
    lines = []
    for src in registered:
        if not (admin or src.visible_in(channel)):
            continue
        docs, chunks = counts.get(src.name, (0, 0))
        scope = "public" if src.public else (
            "restricted, allowed here" if channel in src.allowed_channels else "restricted")
        line = f"• *{src.name}* ({src.type}, {scope}): {docs} documents, {chunks} chunks — {src.location}"
        if src.last_error:
            line += f"\n    last run failed: {src.last_error}"
        lines.append(line)
    unregistered = sorted(set(counts) - {s.name for s in registered})
    for name in unregistered:
        docs, chunks = counts[name]
        lines.append(f"• *{name}* (indexed from the command line): {docs} documents, {chunks} chunks")
    if not lines:
        return "No knowledge sources yet. An admin can add one with `/lorebot add URL_OR_PATH`."
    return "*Knowledge sources searchable here*\n" + "\n".join(lines)


async def _status_text(bot: SlackBot) -> str:
    jobs = await bot.jobs.recent(10)
    if not jobs:
        return "No reindex jobs yet."
    running = [j for j in jobs if j.state in ("queued", "running")]
    done = [j for j in jobs if j.state not in ("queued", "running")]
    lines = []
    if running:
        lines.append("*Running and queued*")
        lines += [f"• {job_text(j)}" for j in running]
    if done:
        lines.append("*Recent*")
        lines += [f"• {job_text(j).splitlines()[0]}" for j in done]
    return "\n".join(lines)


async def _add(bot: SlackBot, client: AsyncWebClient, ack, user: str, channel: str,
               args: list[str]) -> None:
    private = any(a.lower() == "private" for a in args[1:])
    args = args[:1] + [a for a in args[1:] if a.lower() != "private"]
    if not args:
        await ack(text="Usage: `/lorebot add URL_OR_PATH [NAME] [private]`", response_type="ephemeral")
        return
    raw = args[0]
    if raw.lower() == "files":
        source = _files_source(user, channel, args[1:])
        if source is None:
            await ack(text="Usage: `/lorebot add files #channel [NAME]`, or `/lorebot add files "
                      "[NAME]` in a DM with me", response_type="ephemeral")
            return
    elif raw.startswith("<#"):
        # A channel (<#C123|name>): its messages, searchable only where it was allowed, which
        # starts with the channel itself.
        channel_id, _, channel_name = raw.strip("<#>").partition("|")
        name = args[1] if len(args) > 1 else f"slack-{channel_name or channel_id}"
        source = Source(name=name, type="slack_channel", location=channel_id, public=False,
                        allowed_channels=(channel_id,), created_by=user)
    else:
        location = raw.strip("<>").split("|", 1)[0]  # Slack wraps URLs as <url> or <url|text>
        name = args[1] if len(args) > 1 else default_name(location)
        source = Source(name=name, type=guess_type(location), location=location,
                        public=not private, created_by=user)
    source = await bot.sources.add(source)
    audit.warning("Admin %s added source %s (%s %s, %s) in %s", user, source.name, source.type,
                  source.location, "public" if source.public else "restricted", channel)
    await ack(text=f"Added *{source.name}* ({source.type}: {source.location}). Indexing it now; "
              "progress is posted here.", response_type="ephemeral")
    await _queue(bot, client, user, channel, source.name)


def _files_source(user: str, channel: str, args: list[str]) -> Source | None:
    """``add files <#C123|name> [NAME]``: the files shared in that channel; ``add files [NAME]``
    typed in a DM with the bot: the files shared with it there. Restricted to that conversation
    (a DM's files stay the user's). None: no conversation given outside a DM."""
    target = args[0] if args else ""
    if target.startswith("<#") or re.fullmatch(r"[CG][A-Z0-9]{2,}", target):
        conversation, _, label = target.strip("<#>").partition("|")
        rest = args[1:]
        default = f"files-{label or conversation}"
    elif channel.startswith("D"):
        conversation, rest, default = channel, args, f"files-dm-{user}"
    else:
        return None
    return Source(name=rest[0] if rest else default, type="slack_files", location=conversation,
                  public=False, allowed_channels=(conversation,), created_by=user)


async def _queue(bot: SlackBot, client: AsyncWebClient, user: str, channel: str,
                 name: str) -> Job:
    """Post a progress message in the channel (when the bot may) and queue the job with it."""
    message_ts = None
    try:
        posted = await client.chat_postMessage(
            channel=channel, text=f":hourglass: Reindex of *{name}* queued (requested by <@{user}>).")
        message_ts = posted["ts"]
    except SlackApiError as exc:
        logger.info("Cannot post progress in %s (%s)", channel, exc.response.get("error"))
    job, created = await bot.jobs.enqueue(name, requested_by=user,
                                          channel=channel if message_ts else None,
                                          message_ts=message_ts)
    if not created and message_ts:
        await client.chat_update(channel=channel, ts=message_ts,
                                 text=f"A reindex of *{name}* is already {job.state} (job {job.id}).")
    return job


async def _reindex(bot: SlackBot, client: AsyncWebClient, ack, user: str, channel: str,
                   args: list[str]) -> None:
    target = args[0] if args else "all"
    names = [s.name for s in await bot.sources.list()] if target == "all" else [
        (await bot.sources.require(target)).name]
    if not names:
        await ack(text="No sources to reindex. Add one with `/lorebot add URL_OR_PATH`.",
                  response_type="ephemeral")
        return
    audit.warning("Admin %s requested a reindex of %s in %s", user, ", ".join(names), channel)
    await ack(text=f"Reindexing {', '.join(f'*{n}*' for n in names)}; progress is posted here.",
              response_type="ephemeral")
    for name in names:
        await _queue(bot, client, user, channel, name)


async def _confirm_remove(bot: SlackBot, ack, args: list[str]) -> None:
    if not args:
        await ack(text="Usage: `/lorebot remove NAME`", response_type="ephemeral")
        return
    source = await bot.sources.require(args[0])
    text = (f"Remove *{source.name}* ({source.location}) and delete its documents from the "
            "index? Answers will no longer cite it.")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "elements": [
            {"type": "button", "style": "danger", "action_id": REMOVE_CONFIRM,
             "value": source.name, "text": {"type": "plain_text", "text": "Remove"}},
            {"type": "button", "action_id": REMOVE_CANCEL, "value": source.name,
             "text": {"type": "plain_text", "text": "Cancel"}},
        ]},
    ]
    await ack(text=text, blocks=blocks, response_type="ephemeral")


async def _remove(bot: SlackBot, user: str, name: str) -> str:
    owner = f"remove-by-{user}"
    if not await bot.jobs.lock(name, owner):
        return f"A reindex of *{name}* is running; try removing it when it has finished."
    try:
        if not await bot.sources.remove(name):
            return f"There is no source named *{name}* (any more)."
        removed = await bot.remove_documents(name) if bot.remove_documents else 0
    finally:
        await bot.jobs.unlock(name, owner)
    audit.warning("Admin %s removed source %s (%d documents deleted)", user, name, removed)
    return f"Removed *{name}* ({removed} documents deleted from the index)."


async def _channel(bot: SlackBot, ack, user: str, channel: str, args: list[str]) -> None:
    if len(args) != 2 or args[0].lower() not in ("allow", "deny"):
        await ack(text="Usage: `/lorebot channel allow|deny NAME`", response_type="ephemeral")
        return
    verb, name = args[0].lower(), args[1]
    if verb == "allow":
        source = await bot.sources.allow_channel(name, channel)
        text = f"Questions in this channel now search *{source.name}*."
    else:
        source = await bot.sources.deny_channel(name, channel)
        text = (f"Questions in this channel no longer search *{source.name}*." if not source.public
                else f"*{source.name}* is public: it is searched everywhere. (Only restricted "
                     "sources are allowed per channel.)")
    audit.warning("Admin %s: channel %s %s for source %s", user, verb, channel, name)
    await ack(text=text, response_type="ephemeral")

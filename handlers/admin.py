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

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.queue import Job
from bot.jobs.texts import job_text
from bot.sources.registry import Source, SourceRegistryError, default_name, guess_type
from handlers import render, training
from handlers.access import audit, is_admin, refusal, visible_jobs

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

SUBCOMMANDS = frozenset({"sources", "add", "remove", "reindex", "status", "channel", "help",
                         "finetune", "models"})
CHANGING = frozenset({"add", "remove", "reindex", "channel", "finetune"})
REMOVE_CONFIRM = "lorebot_source_remove_confirm"
REMOVE_CANCEL = "lorebot_source_remove_cancel"
ADD_USAGE = "Usage: `/lorebot add URL_OR_PATH [NAME] [--private]`"
ADD_FILES_USAGE = ("Usage: `/lorebot add files #channel [NAME]`, or `/lorebot add files [NAME]` "
                   "in a DM with me")
ADD_CHANNEL_USAGE = "Usage: `/lorebot add #channel [NAME]`"
# Slack's clients turn a typed "--" into an em-dash (—) and some keyboards give en-dashes or
# Unicode hyphens: a word starting with any of them is an option.
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
ADD_OPTIONS = frozenset({"private"})
REGISTRY_DOWN = (":warning: The source registry is unavailable right now (Redis does not "
                 "answer), so I can't show or change sources. Please try again in a minute.")

HELP = (
    "*lorebot* answers questions from the team's documents, with citations.\n"
    "• `/lorebot ask QUESTION`: answer a question here\n"
    "• `/lorebot sources`: the knowledge sources searchable here\n"
    "• `/lorebot status`: running and recent jobs\n"
    "• `/lorebot models`: the retrieval models in use and the fine-tuned candidates\n"
    "• `/lorebot help`: this help\n"
    "Admins only:\n"
    "• `/lorebot add URL_OR_PATH [NAME] [--private]`: add a web site (page, sitemap or crawl) "
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
        name = str(action.get("value") or "")
        channel = (body.get("channel") or {}).get("id")
        if not await is_admin(bot, client, user):
            # A confirm button only reaches a non-admin forwarded or forged: refused and kept.
            audit("remove source", user=user, outcome="refused", reason="not an admin",
                  source=name, channel=channel)
            await respond(text=refusal("remove"), response_type="ephemeral",
                          replace_original=False)
            return
        try:
            text = await _remove(bot, user, name, channel)
        except (RedisError, OSError) as exc:
            logger.warning("Removing source %r failed: Redis unavailable (%s)", name, exc)
            audit("remove source", user=user, outcome="failed", reason="registry unavailable",
                  source=name, channel=channel)
            text = REGISTRY_DOWN
        await respond(text=text, replace_original=True)

    @app.action(REMOVE_CANCEL)
    async def on_cancel(ack, respond) -> None:
        await ack()
        await respond(text="Nothing removed.", replace_original=True)


class _Ack:
    """``ack`` that remembers whether it was called: a slash command is acknowledged once, so
    an error after the first ack goes to the log instead."""

    def __init__(self, ack) -> None:
        self._ack = ack
        self.done = False

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.done = True
        await self._ack(*args, **kwargs)


async def handle(bot: SlackBot, client: AsyncWebClient, ack, command: dict, sub: str,
                 rest: str) -> None:
    """Answer one admin subcommand (ephemeral, through the slash command's ack)."""
    user, channel = command["user_id"], command["channel_id"]
    args = rest.split()
    ack = _Ack(ack)
    if sub == "help":
        await ack(text=HELP, response_type="ephemeral")
        return
    admin = await is_admin(bot, client, user)
    if sub in CHANGING and not admin:
        audit(f"/lorebot {sub}", user=user, outcome="refused", reason="not an admin",
              channel=channel, text=rest)
        await ack(text=refusal(sub), response_type="ephemeral")
        return
    try:
        if sub == "sources":
            await ack(text=await _sources_text(bot, channel, admin), response_type="ephemeral")
        elif sub == "status":
            await ack(text=await _status_text(bot, channel, admin), response_type="ephemeral")
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
        await _reply(ack, f":warning: {render.shown(str(exc), 3000)}")
    except (RedisError, OSError) as exc:
        # The registry and the job queue live in Redis: without it nothing here can be
        # shown or changed truthfully, so say so instead of failing the request.
        logger.warning("/lorebot %s failed: Redis unavailable (%s)", sub, exc)
        if sub in CHANGING:
            audit(f"/lorebot {sub}", user=user, outcome="failed", reason="registry unavailable",
                  channel=channel, text=rest)
        await _reply(ack, REGISTRY_DOWN)


async def _reply(ack: _Ack, text: str) -> None:
    if ack.done:
        logger.warning("Could not tell the user (already acknowledged): %s", text)
    else:
        await ack(text=text, response_type="ephemeral")


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
        line = (f"• *{src.name}* ({src.type}, {scope}): {docs} documents, {chunks} chunks — "
                f"{render.shown(src.location)}")
        if src.last_error:
            line += f"\n    last run failed: {render.shown(src.last_error)}"
        lines.append(line)
    # Documents indexed from the command line have no registry entry saying who may see them:
    # restricted until registered, so only admins see that they exist.
    unregistered = sorted(set(counts) - {s.name for s in registered}) if admin else []
    for name in unregistered:
        docs, chunks = counts[name]
        lines.append(f"• *{render.shown(name)}* (indexed from the command line): {docs} documents, "
                     f"{chunks} chunks")
    if not lines:
        return "No knowledge sources yet. An admin can add one with `/lorebot add URL_OR_PATH`."
    return render.fit_lines(["*Knowledge sources searchable here*", *lines])


async def _status_text(bot: SlackBot, channel: str, admin: bool) -> str:
    jobs = await visible_jobs(bot, await bot.jobs.recent(10), channel, admin)
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
    return render.fit_lines(lines)


def parse_add(args: list[str]) -> tuple[list[str], bool] | str:
    """``add`` arguments as (positional arguments, private), or the reason they are refused.

    ``--private`` in any dash form (Slack's clients make "—private" of "--private") or the
    bare word ``private`` after the location; any other option is refused, never ignored: a
    dropped ``--private`` would publish a source meant to be restricted.
    """
    positional: list[str] = []
    private = False
    for arg in args:
        option = arg.lstrip(_DASHES)
        if option != arg:
            if option.lower() not in ADD_OPTIONS:
                return f":warning: Unknown option `{render.shown(arg, 40)}`. {ADD_USAGE}"
            private = True
        elif positional and arg.lower() == "private":
            private = True
        else:
            positional.append(arg)
    return positional, private


async def _add(bot: SlackBot, client: AsyncWebClient, ack, user: str, channel: str,
               args: list[str]) -> None:
    parsed = parse_add(args)
    if isinstance(parsed, str):
        await ack(text=parsed, response_type="ephemeral")
        return
    args, private = parsed
    if not args:
        await ack(text=ADD_USAGE, response_type="ephemeral")
        return
    raw = args[0]
    if raw.lower() == "files":
        source = _files_source(user, channel, args[1:]) if len(args) <= 3 else None
        if source is None:
            await ack(text=ADD_FILES_USAGE, response_type="ephemeral")
            return
    elif raw.startswith("<#"):
        if len(args) > 2:
            await ack(text=ADD_CHANNEL_USAGE, response_type="ephemeral")
            return
        # A channel (<#C123|name>): its messages, searchable only where it was allowed, which
        # starts with the channel itself.
        channel_id, _, channel_name = raw.strip("<#>").partition("|")
        name = args[1] if len(args) > 1 else f"slack-{channel_name or channel_id}"
        source = Source(name=name, type="slack_channel", location=channel_id, public=False,
                        allowed_channels=(channel_id,), created_by=user)
    else:
        if len(args) > 2:
            await ack(text=ADD_USAGE, response_type="ephemeral")
            return
        location = raw.strip("<>").split("|", 1)[0]  # Slack wraps URLs as <url> or <url|text>
        name = args[1] if len(args) > 1 else default_name(location)
        source = Source(name=name, type=guess_type(location), location=location,
                        public=not private, created_by=user)
    source = await bot.sources.add(source)
    audit("/lorebot add", user=user, outcome="done", channel=channel, source=source.name,
          type=source.type, location=source.location,
          scope="public" if source.public else "restricted")
    await ack(text=f"Added *{source.name}* ({source.type}: {render.shown(source.location)}"
              f"{'' if source.public else ', restricted'}). Indexing it now; progress is posted "
              "here.", response_type="ephemeral")
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
    audit("/lorebot reindex", user=user, outcome="done", channel=channel, sources=names)
    await ack(text=f"Reindexing {', '.join(f'*{n}*' for n in names)}; progress is posted here.",
              response_type="ephemeral")
    for name in names:
        await _queue(bot, client, user, channel, name)


async def _confirm_remove(bot: SlackBot, ack, args: list[str]) -> None:
    if len(args) != 1:
        await ack(text="Usage: `/lorebot remove NAME`", response_type="ephemeral")
        return
    source = await bot.sources.require(args[0])
    text = (f"Remove *{source.name}* ({render.shown(source.location)}) and delete its documents from "
            "the index? Answers will no longer cite it.")
    blocks: list[dict[str, Any]] = [
        render.section(text),
        {"type": "actions", "elements": [
            render.button("Remove", REMOVE_CONFIRM, source.name, style="danger"),
            render.button("Cancel", REMOVE_CANCEL, source.name),
        ]},
    ]
    await ack(text=text, blocks=blocks, response_type="ephemeral")


async def _remove(bot: SlackBot, user: str, name: str, channel: str | None) -> str:
    """Remove the source a confirm button names. The button's value is whatever the click
    says: a name that is not a source is refused (and audited) before anything is locked."""
    if await bot.sources.get(name) is None:
        audit("remove source", user=user, outcome="refused", reason="no such source",
              source=name, channel=channel)
        return f"There is no source named *{render.shown(name, 64)}* (any more)."
    owner = f"remove-by-{user}"
    if not await bot.jobs.lock(name, owner):
        audit("remove source", user=user, outcome="refused", reason="a job is running",
              source=name, channel=channel)
        return f"A reindex of *{name}* is running; try removing it when it has finished."
    try:
        if not await bot.sources.remove(name):
            audit("remove source", user=user, outcome="refused", reason="no such source",
                  source=name, channel=channel)
            return f"There is no source named *{name}* (any more)."
        removed = await bot.remove_documents(name) if bot.remove_documents else 0
    finally:
        await bot.jobs.unlock(name, owner)
    audit("remove source", user=user, outcome="done", source=name, channel=channel,
          documents_deleted=removed)
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
    audit("/lorebot channel", user=user, outcome="done", channel=channel, verb=verb,
          source=source.name)
    await ack(text=text, response_type="ephemeral")

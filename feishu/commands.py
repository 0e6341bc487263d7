"""Chat commands: ``@lorebot /lorebot sources`` and, for admins (``lark.admin_open_ids``),
``/lorebot add URL_OR_PATH [NAME] [--private]`` (registered, and a reindex job queued for the
workers), ``/lorebot reindex [NAME|all]``, ``/lorebot channel allow|deny SOURCE`` and
``/lorebot remove NAME``, which deletes documents and so asks for a typed confirmation
(``/lorebot remove NAME --confirm``), Slack's confirm button in chat form.

Every admin command, done or refused, is one JSON record on the ``lorebot.audit`` logger, as on
Slack, so that what a user typed cannot forge a record of its own.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from bot.service.conversation import new_error_id
from bot.sources.registry import Source, SourceRegistryError, default_name, guess_type
from feishu import card, texts
from feishu.api import LarkApiError, reply_uuid

if TYPE_CHECKING:
    from feishu.bot import LarkBot
    from feishu.reply import Target

logger = logging.getLogger(__name__)
audit_log = logging.getLogger("lorebot.audit")

ADMIN_ONLY = frozenset({"add", "remove", "reindex", "channel"})
NOT_YET: frozenset[str] = frozenset()
ADD_USAGE = "Usage: `/lorebot add URL_OR_PATH [NAME] [--private]`"


def audit(action: str, *, user: str, outcome: str, **fields: Any) -> None:
    record = {"ts": round(time.time(), 3), "action": action, "outcome": outcome, "user": user,
              "platform": "lark", "summary": f"{outcome.capitalize()}: {action} by {user}",
              **fields}
    audit_log.warning("%s", json.dumps(record, ensure_ascii=True, default=str))


async def run(bot: LarkBot, target: Target, user: str, text: str) -> None:
    """Run one command and reply with its outcome (an error id when it failed)."""
    args = text.split()
    sub = args[0].lower() if args else "help"
    try:
        reply = await _run(bot, target.chat_id, user, sub, args[1:])
    except Exception:  # noqa: BLE001 - the user hears back, with an id that is in the log
        error_id = new_error_id()
        logger.exception("/lorebot %s failed (error id %s)", sub, error_id)
        audit(f"/lorebot {sub}", user=user, outcome="failed", channel=target.chat_id,
              error_id=error_id)
        reply = texts.error(error_id)
    try:
        await bot.api.reply_card(target.message_id, card.text_card(reply),
                                 in_thread=target.in_thread, uuid=reply_uuid(target.message_id))
    except LarkApiError as exc:
        logger.error("Could not reply to /lorebot %s in %s: %s", sub, target.chat_id, exc)


async def _run(bot: LarkBot, chat: str, user: str, sub: str, args: list[str]) -> str:
    admin = user in bot.settings.lark.admin_ids
    if sub in ADMIN_ONLY and not admin:
        audit(f"/lorebot {sub}", user=user, outcome="refused", channel=chat,
              text=" ".join(args), reason="not an admin")
        return texts.refusal(sub)
    if sub == "sources":
        return await _sources(bot, chat, admin)
    if sub == "channel":
        return await _channel(bot, chat, user, args)
    if sub == "add":
        return await _add(bot, chat, user, args)
    if sub == "reindex":
        return await _reindex(bot, chat, user, args)
    if sub == "remove":
        return await _remove(bot, chat, user, args)
    if sub in NOT_YET:
        return texts.UNSUPPORTED_HERE.format(sub=sub)
    return texts.COMMAND_HELP


async def _sources(bot: LarkBot, chat: str, admin: bool) -> str:
    lines = []
    for src in await bot.sources.list():
        if not (admin or src.visible_in(chat)):
            continue
        scope = "public" if src.public else (
            "restricted, allowed here" if chat in src.allowed_channels else "restricted")
        lines.append(f"• **{src.name}** ({src.type}, {scope})")
    if not lines:
        return "No knowledge sources are searchable here yet."
    return "\n".join(["**Knowledge sources searchable here**", *lines])


async def _channel(bot: LarkBot, chat: str, user: str, args: list[str]) -> str:
    if len(args) != 2 or args[0].lower() not in ("allow", "deny"):
        return "Usage: `/lorebot channel allow|deny SOURCE`"
    verb, name = args[0].lower(), args[1]
    if await bot.sources.get(name) is None:
        return f"There is no source named `{name}`."
    if verb == "allow":
        source = await bot.sources.allow_channel(name, chat)
        text = f"Questions in this chat now search **{source.name}**."
    else:
        source = await bot.sources.deny_channel(name, chat)
        text = (f"Questions in this chat no longer search **{source.name}**." if not source.public
                else f"**{source.name}** is public: it is searched everywhere.")
    audit("/lorebot channel", user=user, outcome="done", channel=chat, verb=verb,
          source=source.name)
    return text


async def _add(bot: LarkBot, chat: str, user: str, args: list[str]) -> str:
    private = "--private" in args
    args = [a for a in args if a != "--private"]
    if not 1 <= len(args) <= 2 or args[0].startswith("-"):
        return ADD_USAGE
    # Feishu sends a pasted link as text; a Markdown-style [text](url) is reduced to the url.
    location = args[0]
    if (link := _markdown_link(location)) is not None:
        location = link
    name = args[1] if len(args) > 1 else default_name(location)
    try:
        source = await bot.sources.add(Source(name=name, type=guess_type(location),
                                              location=location, public=not private,
                                              created_by=user))
    except SourceRegistryError as exc:
        audit("/lorebot add", user=user, outcome="refused", channel=chat, location=location,
              reason=str(exc))
        return f"Could not add it: {exc}"
    job, _created = await bot.jobs.enqueue(source.name, requested_by=user)
    audit("/lorebot add", user=user, outcome="done", channel=chat, source=source.name,
          type=source.type, location=source.location,
          scope="public" if source.public else "restricted", job=job.id)
    return (f"Added **{source.name}** ({source.type}{'' if source.public else ', restricted'}). "
            f"A reindex is queued (job {job.id}); `/lorebot sources` shows it once indexed.")


async def _reindex(bot: LarkBot, chat: str, user: str, args: list[str]) -> str:
    target = args[0] if args else "all"
    if target == "all":
        names = [s.name for s in await bot.sources.list()]
    elif await bot.sources.get(target) is None:
        return f"There is no source named `{target}`."
    else:
        names = [target]
    if not names:
        return "No sources to reindex. Add one with `/lorebot add URL_OR_PATH`."
    jobs = [(await bot.jobs.enqueue(name, requested_by=user))[0] for name in names]
    audit("/lorebot reindex", user=user, outcome="done", channel=chat, sources=names)
    return "Reindex queued: " + ", ".join(f"**{n}** (job {j.id}, {j.state})"
                                          for n, j in zip(names, jobs))


async def _remove(bot: LarkBot, chat: str, user: str, args: list[str]) -> str:
    """Remove a source and its documents; the first call only says what would go."""
    confirm = "--confirm" in args
    args = [a for a in args if a != "--confirm"]
    if len(args) != 1 or args[0].startswith("-"):
        return "Usage: `/lorebot remove NAME` (then `/lorebot remove NAME --confirm`)"
    name = args[0]
    if await bot.sources.get(name) is None:
        audit("/lorebot remove", user=user, outcome="refused", channel=chat, source=name,
              reason="no such source")
        return f"There is no source named `{name}`."
    if not confirm:
        return (f"This removes **{name}** and deletes its documents from the index. To go ahead, "
                f"send `/lorebot remove {name} --confirm`.")
    owner = f"remove-by-{user}"
    if not await bot.jobs.lock(name, owner):  # a running reindex would write it back
        audit("/lorebot remove", user=user, outcome="refused", channel=chat, source=name,
              reason="a job is running")
        return f"A reindex of **{name}** is running; remove it when it has finished."
    try:
        await bot.sources.remove(name)
        removed = await bot.remove_documents(name) if bot.remove_documents else 0
    finally:
        await bot.jobs.unlock(name, owner)
    audit("/lorebot remove", user=user, outcome="done", channel=chat, source=name,
          documents_deleted=removed)
    return f"Removed **{name}** ({removed} documents deleted from the index)."


def _markdown_link(text: str) -> str | None:
    if text.startswith("[") and "](" in text and text.endswith(")"):
        return text.split("](", 1)[1][:-1]
    return None

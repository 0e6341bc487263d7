"""Chat commands: ``@lorebot /lorebot sources`` and, for admins (``lark.admin_open_ids``),
``/lorebot channel allow|deny SOURCE``. ``add``, ``remove`` and ``reindex`` are refused to
non-admins and, for admins, not yet run from Feishu (they are told the shell command).

Every admin command, done or refused, is one JSON record on the ``lorebot.audit`` logger, as on
Slack, so that what a user typed cannot forge a record of its own.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from bot.service.conversation import new_error_id
from feishu import card, texts
from feishu.api import LarkApiError, reply_uuid

if TYPE_CHECKING:
    from feishu.bot import LarkBot
    from feishu.reply import Target

logger = logging.getLogger(__name__)
audit_log = logging.getLogger("lorebot.audit")

ADMIN_ONLY = frozenset({"add", "remove", "reindex", "channel"})
NOT_YET = frozenset({"add", "remove", "reindex"})


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

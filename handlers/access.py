"""Who may run admin commands, the refusal they get otherwise, and the audit log."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

if TYPE_CHECKING:
    from bot.jobs.queue import Job
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)
audit_log = logging.getLogger("lorebot.audit")


def audit(action: str, *, user: str | None, outcome: str, **fields: Any) -> None:
    """One audit record on ``lorebot.audit``: a single JSON object, so that what users typed
    (a command's text, a button's value, a source name) is a JSON string whose newlines and
    quotes are escaped, and cannot forge a record of its own. ``outcome``: done | refused |
    failed; ``fields``: what the action was about (channel, source, text, reason, …)."""
    record = {"ts": round(time.time(), 3), "action": action, "outcome": outcome, "user": user,
              # For people reading the log (made of the fixed parts only, never user input).
              "summary": f"{outcome.capitalize()}: {action} by {user}", **fields}
    # ensure_ascii: control and line-separator characters (U+2028…) come out as \u escapes.
    audit_log.warning("%s", json.dumps(record, ensure_ascii=True, default=str))


def refusal(sub: str) -> str:
    return (f":no_entry: Only lorebot admins can `{sub}`. Ask an admin, or ask to be added to "
            "LOREBOT_SLACK__ADMIN_USERS.")


async def is_admin(bot: SlackBot, client: AsyncWebClient, user: str) -> bool:
    s = bot.settings.slack
    if user in s.admin_ids:
        return True
    if not s.workspace_admins_are_admins:
        return False
    try:
        # POST (Slack accepts both): one verb for every call, proxies and the test fake alike.
        info = await client.api_call("users.info", data={"user": user})
    except SlackClientError as exc:
        logger.warning("users.info failed for %s (%s): not treated as an admin", user, exc)
        return False
    member = info.get("user") or {}
    return bool(member.get("is_admin") or member.get("is_owner"))


async def visible_jobs(bot: SlackBot, jobs: list[Job], channel: str | None,
                       admin: bool) -> list[Job]:
    """The jobs a user may see: all for admins; for others only reindexes of sources visible
    in ``channel`` (a job of a restricted, unknown or removed source, or a training run, tells
    them nothing they may know)."""
    if admin:
        return jobs
    visible = {s.name for s in await bot.sources.list() if s.visible_in(channel)}
    return [j for j in jobs if j.kind == "reindex" and j.source in visible]

"""Who may run admin commands, the refusal they get otherwise, and the audit log."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)
audit = logging.getLogger("lorebot.audit")


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

"""Questions asked in messages: an @mention in a channel, a DM, a follow-up in a thread the
bot answered.

For one @mention Slack sends both a ``message`` and an ``app_mention`` event, and it retries
events it thinks were not acknowledged; both listeners claim the message in Redis first, so only
one of them answers, once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.parse import (
    Place,
    conversation_key,
    dedupe_keys,
    is_person_message,
    mentions,
    mentions_someone_else,
    question_text,
)
from handlers.reply import answer_question, neutral

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)


def register(app: AsyncApp, bot: SlackBot) -> None:
    """Listen to ``app_mention`` and ``message`` events."""

    @app.event("app_mention")
    async def on_app_mention(event: dict, body: dict, client: AsyncWebClient,
                             context: AsyncBoltContext) -> None:
        await handle_message(bot, client, event, body, context.bot_user_id, mentioned=True)

    @app.event("message")
    async def on_message(event: dict, body: dict, client: AsyncWebClient,
                         context: AsyncBoltContext) -> None:
        await handle_message(bot, client, event, body, context.bot_user_id, mentioned=False)


async def handle_message(
    bot: SlackBot, client: AsyncWebClient, event: dict[str, Any], body: dict[str, Any],
    bot_user_id: str | None, *, mentioned: bool,
) -> None:
    """Answer ``event`` if it is a question for the bot and nobody answered it yet."""
    if not is_person_message(event):
        return
    text = event.get("text") or ""
    if event.get("files") and not question_text(text, bot_user_id):
        return  # a file shared without a word: not a question (handlers.files may index it)
    channel = event["channel"]
    thread_ts = event.get("thread_ts")
    team = body.get("team_id") or event.get("team")
    is_dm = event.get("channel_type") == "im"
    if not (mentioned or mentions(text, bot_user_id) or is_dm
            or await _is_followup(bot, client, event, bot_user_id, team)):
        return
    if not await bot.service.claim(*dedupe_keys(event, body.get("event_id"))):
        logger.info("Skipping a duplicate of message %s in %s", event.get("ts"), channel)
        return
    # In a DM the answer goes below the question, not into a new thread; elsewhere, in a thread.
    reply_ts = thread_ts if is_dm else (thread_ts or event["ts"])
    place = Place(
        channel=channel, thread_ts=reply_ts, question_ts=event["ts"], user=event["user"],
        team=team, conversation=conversation_key(team, channel, reply_ts),
    )
    bot.spawn(answer_question(bot, client, place, question_text(text, bot_user_id)),
              name=f"answer {channel}/{event['ts']}")


async def _is_followup(bot: SlackBot, client: AsyncWebClient, event: dict[str, Any],
                       bot_user_id: str | None, team: str | None) -> bool:
    """A message in a thread the bot answered, not addressed to someone else."""
    channel, thread_ts, text = event["channel"], event.get("thread_ts"), event.get("text") or ""
    if not thread_ts or not bot.settings.slack.thread_followups:
        return False
    if mentions_someone_else(text, bot_user_id):
        return False

    async def bot_in_thread() -> bool | None:
        # Redis cannot say (down): Slack can, from the thread's own messages.
        try:
            page = await client.api_call("conversations.replies", data={
                "channel": channel, "ts": thread_ts, "limit": 200})
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("Could not read thread %s in %s to spot a follow-up: %s",
                           thread_ts, channel, exc)
            return None
        return any(m.get("user") == bot_user_id if bot_user_id else bool(m.get("bot_id"))
                   for m in page.get("messages") or [])

    place = neutral(Place(channel=channel, thread_ts=thread_ts, question_ts=event.get("ts"),
                          user=event.get("user") or "", team=team,
                          conversation=conversation_key(team, channel, thread_ts)))
    return await bot.service.is_followup(place, bot_in_thread=bot_in_thread)

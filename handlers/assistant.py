"""Slack's assistant pane: suggested prompts when a thread starts, then answers with a
"Searching…" status while the bot works. Routed by bolt's ``AsyncAssistant`` middleware, which
takes these events before the ``message`` listener sees them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from handlers import texts
from handlers.parse import (
    Place,
    conversation_key,
    dedupe_keys,
    is_person_message,
    question_text,
)
from handlers.reply import answer_question

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

TITLE_CHARS = 80


def register(app: AsyncApp, bot: SlackBot) -> None:
    """Install the assistant middleware with lorebot's listeners."""
    assistant = AsyncAssistant(logger=logging.getLogger("slack_bolt.assistant"))

    @assistant.thread_started
    async def on_thread_started(payload: dict, client: AsyncWebClient) -> None:
        thread = payload["assistant_thread"]
        channel, thread_ts = thread["channel_id"], thread["thread_ts"]
        try:
            await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=texts.WELCOME)
            await client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, title=texts.SUGGESTED_PROMPTS_TITLE,
                prompts=[{"title": t, "message": m} for t, m in texts.SUGGESTED_PROMPTS],
            )
        except SlackClientError as exc:
            logger.warning("Could not greet assistant thread in %s: %s", channel, exc)

    @assistant.thread_context_changed
    async def on_context_changed() -> None:
        # One global source scope for now: the channel the user is looking at changes nothing.
        return None

    @assistant.user_message
    async def on_user_message(payload: dict, body: dict, client: AsyncWebClient,
                              context: AsyncBoltContext) -> None:
        if not is_person_message(payload):
            return
        if not await bot.service.claim(*dedupe_keys(payload, body.get("event_id"))):
            logger.info("Skipping a duplicate assistant message %s", payload.get("ts"))
            return
        channel, thread_ts = payload["channel"], payload["thread_ts"]
        team = body.get("team_id") or payload.get("team")
        place = Place(
            channel=channel, thread_ts=thread_ts, question_ts=payload["ts"],
            user=payload["user"], team=team, assistant=True,
            conversation=conversation_key(team, channel, thread_ts),
        )
        question = question_text(payload.get("text") or "", context.bot_user_id)
        bot.spawn(_answer(bot, client, place, question), name=f"assistant {channel}/{thread_ts}")

    app.use(assistant)


async def _answer(bot: SlackBot, client: AsyncWebClient, place: Place, question: str) -> None:
    # The first question names the thread in the assistant's history list.
    if question and not await bot.conversations.get(place.conversation):
        try:
            await client.assistant_threads_setTitle(
                channel_id=place.channel, thread_ts=place.thread_ts, title=question[:TITLE_CHARS]
            )
        except SlackClientError as exc:
            logger.debug("Could not set the assistant thread title: %s", exc)
    await answer_question(bot, client, place, question)

"""The ``/lorebot`` slash command. ``ask QUESTION`` answers; the source subcommands
(sources, add, remove, reindex, status, channel, help) are in ``handlers.admin``; anything else
shows the help."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers import admin, texts
from handlers.parse import Place, conversation_key, question_text
from handlers.private import answer_privately
from handlers.reply import answer_question

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

COMMAND = "/lorebot"


def register(app: AsyncApp, bot: SlackBot) -> None:
    """Listen to ``/lorebot``."""

    @app.command(COMMAND)
    async def on_command(ack, command: dict, client: AsyncWebClient, respond) -> None:
        sub, _, rest = (command.get("text") or "").strip().partition(" ")
        if sub.lower() in admin.SUBCOMMANDS:
            await admin.handle(bot, client, ack, command, sub.lower(), rest.strip())
            return
        if sub.lower() != "ask":
            await ack(text=admin.HELP, response_type="ephemeral")
            return
        question = question_text(rest, None)
        if not question:
            await ack(text=texts.COMMAND_ASK_EMPTY, response_type="ephemeral")
            return
        await ack()
        bot.spawn(_ask(bot, client, respond, command, question),
                  name=f"command {command.get('channel_id')}")


async def _ask(bot: SlackBot, client: AsyncWebClient, respond, command: dict, question: str) -> None:
    """Post the question in the channel and answer in its thread, so follow-ups work there."""
    channel, user, team = command["channel_id"], command["user_id"], command.get("team_id")
    try:
        header = await client.chat_postMessage(
            channel=channel, text=texts.command_question_header(user, question)
        )
    except SlackApiError as exc:
        # Not a member, or a DM between people: answer the asker alone instead.
        logger.info("Cannot post in %s (%s); answering privately", channel,
                    exc.response.get("error"))
        place = Place(channel=channel, thread_ts=None, question_ts=None, user=user, team=team,
                      conversation=conversation_key(team, channel, None))
        await answer_privately(bot, respond, place, question)
        return
    ts = header["ts"]
    place = Place(channel=channel, thread_ts=ts, question_ts=None, user=user, team=team,
                  conversation=conversation_key(team, channel, ts))
    await answer_question(bot, client, place, question)

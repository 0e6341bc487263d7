"""Courtesies around a reply: the progress reaction or status, notes only the asker sees, and
Slack errors in a few words for the log."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from handlers import texts
from handlers.parse import Place

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)


async def post_ephemeral(client: AsyncWebClient, place: Place, text: str) -> None:
    """A message only the asker sees, in the question's thread."""
    try:
        await client.chat_postEphemeral(
            channel=place.channel, user=place.user, text=text, thread_ts=place.thread_ts,
        )
    except SlackClientError as exc:
        logger.warning("Could not send an ephemeral message in %s: %s", place.channel, why(exc))


class Progress:
    """Shows that the bot is working: the assistant pane's status, else a reaction on the
    question. Failures here are logged and ignored: progress is a courtesy, not the answer."""

    def __init__(self, bot: SlackBot, client: AsyncWebClient, place: Place) -> None:
        self.client = client
        self.place = place
        self.reaction = bot.settings.slack.progress_reaction
        self._shown = False

    async def start(self) -> None:
        p = self.place
        try:
            if p.assistant and p.thread_ts:
                await self.client.assistant_threads_setStatus(
                    channel_id=p.channel, thread_ts=p.thread_ts, status=texts.SEARCHING,
                    loading_messages=list(texts.LOADING_MESSAGES),
                )
            elif p.question_ts and self.reaction:
                await self.client.reactions_add(
                    channel=p.channel, timestamp=p.question_ts, name=self.reaction
                )
            else:
                return
            self._shown = True
        except SlackClientError as exc:
            logger.debug("Could not show progress in %s: %s", p.channel, why(exc))

    async def stop(self) -> None:
        if not self._shown:
            return
        p = self.place
        try:
            if p.assistant and p.thread_ts:
                # A reply clears the status by itself; this covers the paths without one.
                await self.client.assistant_threads_setStatus(
                    channel_id=p.channel, thread_ts=p.thread_ts, status=""
                )
            elif p.question_ts:
                await self.client.reactions_remove(
                    channel=p.channel, timestamp=p.question_ts, name=self.reaction
                )
        except SlackClientError as exc:
            logger.debug("Could not clear progress in %s: %s", p.channel, why(exc))


def why(exc: SlackClientError) -> str:
    """A Slack error in a few words (the API's error code), never the request or its token."""
    if isinstance(exc, SlackApiError):
        try:
            return str(exc.response.get("error", "unknown error"))
        except AttributeError:  # a response that is not JSON (an HTTP error page)
            return "unknown error"
    return type(exc).__name__

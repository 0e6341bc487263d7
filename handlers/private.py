"""Answering a slash command where the bot cannot post: one ephemeral message for the asker."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from bot.service import conversation as service
from handlers import render, texts
from handlers.parse import Place
from handlers.reply import neutral, notice_text

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)


async def answer_privately(bot: SlackBot, respond, place: Place, question: str) -> None:
    """Answer a slash command where the bot cannot post (a DM between people, a channel it is
    not in): the whole answer as one ephemeral message through the command's ``respond``."""
    try:
        async for event in bot.service.answer(question, neutral(place), remember=False):
            if isinstance(event, service.Final):
                s = bot.settings
                await respond(
                    text=render.plain_text(event.answer.text), response_type="ephemeral",
                    blocks=render.answer_blocks(event.answer, event.answer_id,
                                                max_sources=s.answer.max_sources,
                                                wrong_source_button=s.slack.wrong_source_button),
                )
            elif isinstance(event, service.Notice):
                await respond(text=notice_text(event), response_type="ephemeral")
            elif isinstance(event, service.Refused):
                await respond(text=texts.rate_limited(event.retry_after_s),
                              response_type="ephemeral")
            elif isinstance(event, service.Failed):
                await respond(text=texts.error(event.error_id), response_type="ephemeral")
    except Exception:  # noqa: BLE001 - the user always hears back
        error_id = service.new_error_id()
        logger.exception("Answering a command failed (error id %s)", error_id)
        with contextlib.suppress(Exception):
            await respond(text=texts.error(error_id), response_type="ephemeral")

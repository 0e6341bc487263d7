"""Answering one question in Feishu/Lark: the service's events rendered as one card.

Guarantees, as on Slack:

- one reply per question: the card is sent once (with an idempotency ``uuid``, so a send whose
  response was lost can be sent again without a second message) and then patched;
- while the answer streams, at most one patch per ``lark.update_interval_s`` (at least a second:
  Feishu rate-limits edits of one message), the last one included;
- never a silent failure: an error turns the card into an apology with an error id that is also
  in the log; a rate limit, an empty question or an unreadable channel policy get a reply too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.service import conversation as service
from feishu import card, texts
from feishu.api import LarkApiError, reply_uuid

if TYPE_CHECKING:
    from feishu.bot import LarkBot

logger = logging.getLogger(__name__)

# The first text waits this long, so an answer arriving in one piece is sent as one card.
FIRST_FLUSH_S = 0.25
FINAL_PATCH_TRIES = 3


@dataclass(frozen=True)
class Target:
    """The message a reply answers, and whether the reply opens (or stays in) its thread."""

    message_id: str
    chat_id: str
    in_thread: bool


def notice_text(notice: service.Notice) -> str:
    return {"empty": texts.EMPTY_QUESTION, "policy": texts.POLICY_UNAVAILABLE}.get(
        notice.reason, notice.text)


async def answer_question(bot: LarkBot, target: Target, place: service.Place,
                          question: str) -> None:
    """Answer ``question``: one card, streamed, with sources and feedback buttons."""
    writer = CardReply(bot, target)
    try:
        if bot.stopping:
            await writer.text(texts.RESTARTING)
            return
        async for event in bot.service.answer(question, place):
            if isinstance(event, service.Delta):
                writer.add(event.text)
            elif isinstance(event, service.Final):
                await writer.finish(card.answer_card(
                    event.answer, event.answer_id, max_sources=bot.settings.answer.max_sources))
            elif isinstance(event, service.Notice):
                await writer.text(notice_text(event))
            elif isinstance(event, service.Refused):
                # Feishu has no message for one person in a thread: the note is visible.
                await writer.text(texts.rate_limited(event.retry_after_s))
            elif isinstance(event, service.Failed):
                await writer.fail(texts.error(event.error_id))
    except asyncio.CancelledError:
        logger.warning("Answer in %s cut short by shutdown: telling the asker", target.chat_id)
        await asyncio.shield(writer.fail(texts.RESTARTING))
        raise
    except Exception:  # noqa: BLE001 - a reply that could not be written still gets an id
        error_id = service.new_error_id()
        logger.exception("Replying failed in %s (error id %s)", target.chat_id, error_id)
        await writer.fail(texts.error(error_id))


class CardReply:
    """The one reply card of a question, patched while text arrives, then finished."""

    def __init__(self, bot: LarkBot, target: Target) -> None:
        self.api = bot.api
        self.target = target
        self.interval_s = bot.settings.lark.update_interval_s
        self.message_id: str | None = None
        self._text = ""
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self._last_edit = 0.0  # monotonic time of the last send or patch

    def add(self, delta: str) -> None:
        self._text += delta
        if self._flusher is None and self._text.strip():
            self._flusher = asyncio.create_task(self._flush_loop())

    async def finish(self, final: card.Card) -> None:
        """The finished answer: one reply if nothing was sent yet, else the last patch."""
        await self._stop_flushing()
        async with self._lock:
            if self.message_id is None:
                await self._reply(final)
                return
            await asyncio.sleep(max(0.0, self._last_edit + self.interval_s - time.monotonic()))
            for attempt in range(FINAL_PATCH_TRIES):
                try:
                    await self._patch(final)
                    return
                except LarkApiError as exc:
                    if attempt + 1 == FINAL_PATCH_TRIES:
                        raise
                    logger.warning("Final patch of the reply in %s failed (%s); retrying",
                                   self.target.chat_id, exc)
                    await asyncio.sleep(max(self.interval_s, 0.5 * 2**attempt))

    async def text(self, text: str) -> None:
        """A reply that is only a short text."""
        await self._stop_flushing()
        async with self._lock:
            if self.message_id is None:
                await self._reply(card.text_card(text))
            else:
                await self._patch(card.text_card(text))

    async def fail(self, text: str) -> None:
        """Turn the reply into ``text`` (an error notice); never raises."""
        await self._stop_flushing()
        async with self._lock:
            if self.message_id is not None:
                try:
                    await self._patch(card.text_card(text))
                    return
                except LarkApiError as exc:
                    logger.warning("Could not patch the reply into an error notice: %s", exc)
            try:
                await self._reply(card.text_card(text), purpose="error")
            except LarkApiError as exc:
                logger.error("Could not send the error notice in %s: %s", self.target.chat_id, exc)

    async def _flush_loop(self) -> None:
        if await self._wait_done(FIRST_FLUSH_S):
            return
        while True:
            async with self._lock:
                if self._done.is_set():
                    return
                try:
                    preview = card.streaming_card(self._text)
                    if self.message_id is None:
                        await self._reply(preview)
                    else:
                        await self._patch(preview)
                except LarkApiError as exc:
                    # A lost intermediate update is harmless: the final card carries everything.
                    logger.warning("Streaming update failed in %s: %s", self.target.chat_id, exc)
            if await self._wait_done(self.interval_s):
                return

    async def _wait_done(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._done.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _stop_flushing(self) -> None:
        self._done.set()
        if self._flusher is not None:
            try:
                await self._flusher
            except Exception:  # noqa: BLE001 - the final card carries everything anyway
                logger.exception("Streaming the reply in %s failed", self.target.chat_id)

    async def _reply(self, content: card.Card, purpose: str = "answer") -> None:
        uuid = reply_uuid(self.target.message_id, purpose)
        try:
            self.message_id = await self._send(content, uuid)
        except LarkApiError as exc:
            if exc.code is not None:
                raise  # Feishu refused it: sending it again would be refused too
            # The response was lost; the reply may have landed. The same uuid makes Feishu
            # send at most one message, so asking again is safe.
            logger.warning("A reply in %s lost its response (%s): sending it again with the same "
                           "uuid", self.target.chat_id, exc)
            self.message_id = await self._send(content, uuid)
        self._last_edit = time.monotonic()

    async def _send(self, content: card.Card, uuid: str) -> str:
        return await self.api.reply_card(self.target.message_id, content,
                                         in_thread=self.target.in_thread, uuid=uuid)

    async def _patch(self, content: card.Card) -> None:
        await self.api.patch_card(self.message_id, content)
        self._last_edit = time.monotonic()

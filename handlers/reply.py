"""Answering one question in Slack: progress, the streamed reply, the final Block Kit message.

Every surface (mention, DM, thread follow-up, assistant pane, slash command) ends here, after
it has parsed its payload into a :class:`handlers.parse.Place`. Guarantees:

- exactly one reply message per question (streaming edits that one message);
- never a silent failure: any error replaces the reply with a short apology and an error id that
  is also in the log, next to the traceback.

Streaming: with ``slack.streaming = native`` the text goes out through ``chat.startStream`` /
``appendStream`` / ``stopStream`` (falling back to the next mode, for good, the first time Slack
refuses); otherwise the first text is posted and then edited with ``chat.update``. Either way
at most one update per ``slack.update_interval_s``, and the final message is rendered whole
(linked citations, sources, buttons) with one last ``chat.update`` (in update mode, that one too
keeps the interval). A one-piece answer
(extractive or "not covered") is a single ``chat.postMessage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.answer.pipeline import Answer
from bot.answer.turns import Turn
from bot.slack.app import new_error_id
from bot.state.feedback import AnswerRecord, SourceRef, new_answer_id
from handlers import render, texts
from handlers.parse import Place

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

# The first text waits this long before it is sent, so that an answer arriving in one piece
# goes out as one finished message instead of a stream of one update.
FIRST_FLUSH_S = 0.25
# Intermediate (update-mode) text is cut to this many characters; the final message is whole.
PREVIEW_CHARS = 3500


async def answer_question(bot: SlackBot, client: AsyncWebClient, place: Place, question: str) -> None:
    """Answer ``question`` at ``place``: one reply, streamed, with sources and feedback buttons."""
    writer = ReplyWriter(bot, client, place)
    progress = Progress(bot, client, place)
    try:
        if not question:
            await writer.post_text(texts.EMPTY_QUESTION)
            return
        decision = await bot.rate_limiter.hit(place.user)
        if not decision.allowed:
            logger.info("Rate limit hit by %s in %s", place.user, place.channel)
            await post_ephemeral(client, place, texts.rate_limited(decision.retry_after_s))
            return
        await progress.start()
        if place.thread_ts:
            await bot.threads.add(place.conversation)
        history = await bot.conversations.get(place.conversation)
        final: Answer | None = None
        async with aclosing(bot.pipeline.stream(question, history,
                                                **await bot.source_filter(place.channel))) as parts:
            async for part in parts:
                if isinstance(part, str):
                    writer.add(part)
                else:
                    final = part
        if final is None:
            raise RuntimeError("the answer pipeline ended without an answer")
        answer_id = new_answer_id()
        # Remembered before the buttons exist, so a quick click always finds the answer.
        await bot.feedback.remember_answer(_record(answer_id, question, final, place))
        await bot.conversations.append(place.conversation, Turn(question, final.text))
        await writer.finish(final, answer_id)
        logger.info("Answered in %s (%s mode, %d sources)", place.channel, final.mode,
                    len(final.citations))
    except Exception:  # noqa: BLE001 - whatever failed, the user gets a reply with an error id
        error_id = new_error_id()
        logger.exception("Answering failed in %s (error id %s)", place.channel, error_id)
        await writer.fail(texts.error(error_id))
    finally:
        await progress.stop()


def _record(answer_id: str, question: str, answer: Answer, place: Place) -> AnswerRecord:
    return AnswerRecord(
        answer_id=answer_id, question=question, answer=answer.text, mode=answer.mode,
        sources=tuple(SourceRef(c.n, c.title, c.url, c.path) for c in answer.citations),
        user=place.user, channel=place.channel, thread_ts=place.thread_ts, team=place.team,
        query=answer.query,
    )


async def post_ephemeral(client: AsyncWebClient, place: Place, text: str) -> None:
    """A message only the asker sees, in the question's thread."""
    try:
        await client.chat_postEphemeral(
            channel=place.channel, user=place.user, text=text, thread_ts=place.thread_ts,
        )
    except SlackClientError as exc:
        logger.warning("Could not send an ephemeral message in %s: %s", place.channel, _why(exc))


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
            logger.debug("Could not show progress in %s: %s", p.channel, _why(exc))

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
            logger.debug("Could not clear progress in %s: %s", p.channel, _why(exc))


class ReplyWriter:
    """The one reply message of a question, streamed while text arrives, then finished."""

    def __init__(self, bot: SlackBot, client: AsyncWebClient, place: Place) -> None:
        self.bot = bot
        self.client = client
        self.place = place
        self.interval_s = bot.settings.slack.update_interval_s
        # Slack's streaming API needs a thread to stream into.
        self.native = bot.native_streaming and place.thread_ts is not None
        self.ts: str | None = None
        self._text = ""  # everything received
        self._sent = 0  # how much of it Slack has (native mode)
        self._streaming = False  # a native stream is open
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self._last_edit = 0.0  # when the last update-mode edit was sent (monotonic)

    def add(self, delta: str) -> None:
        """Queue answer text; it reaches Slack on the next flush."""
        self._text += delta
        if self._flusher is None and self._text.strip():
            self._flusher = asyncio.create_task(self._flush_loop())

    async def finish(self, answer: Answer, answer_id: str) -> None:
        """Replace whatever was streamed with the rendered answer (one postMessage if nothing
        was sent yet)."""
        await self._stop_flushing()
        s = self.bot.settings
        kwargs = dict(
            blocks=render.answer_blocks(
                answer, answer_id, max_sources=s.answer.max_sources,
                wrong_source_button=s.slack.wrong_source_button,
            ),
            text=render.plain_text(answer.text),
        )
        async with self._lock:
            if self.ts is None:
                await self._post(**kwargs)
                return
            if self._streaming:
                footer = render.footer_blocks(
                    answer, answer_id, max_sources=s.answer.max_sources,
                    wrong_source_button=s.slack.wrong_source_button,
                )
                await self._stop_stream(blocks=footer)
            else:
                # Edits stay at most one per interval, the final one included (Slack rate-limits
                # chat.update); the text is already on screen, only links and buttons wait.
                await asyncio.sleep(max(0.0, self._last_edit + self.interval_s - time.monotonic()))
            await self.client.chat_update(channel=self.place.channel, ts=self.ts, **kwargs)

    async def post_text(self, text: str) -> None:
        """A reply that is just a short text (help, empty question)."""
        await self._post(text=text, blocks=render.text_blocks(text))

    async def fail(self, text: str) -> None:
        """Turn the reply into ``text`` (an error notice); never raises."""
        await self._stop_flushing()
        async with self._lock:
            try:
                if self.ts is not None:
                    if self._streaming:
                        with contextlib.suppress(SlackClientError):
                            await self._stop_stream()
                    await self.client.chat_update(
                        channel=self.place.channel, ts=self.ts, text=text,
                        blocks=render.text_blocks(text),
                    )
                    return
            except SlackClientError as exc:
                logger.warning("Could not edit the reply into an error notice: %s", _why(exc))
            try:
                await self._post(text=text, blocks=render.text_blocks(text))
            except SlackClientError as exc:
                logger.error("Could not post the error notice in %s: %s", self.place.channel,
                             _why(exc))

    # -- flushing -------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        if await self._wait_done(FIRST_FLUSH_S):
            return
        while True:
            async with self._lock:
                if self._done.is_set():
                    return
                try:
                    await self._flush()
                except SlackClientError as exc:
                    # A lost intermediate update is harmless: the final one carries everything.
                    logger.warning("Streaming update failed in %s: %s", self.place.channel, _why(exc))
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
            await self._flusher

    async def _flush(self) -> None:
        if self.native:
            try:
                await self._flush_native()
                return
            except SlackApiError as exc:
                if self._streaming:
                    raise
                # Streaming is not enabled for this app or workspace: edit messages instead.
                logger.warning("Slack refused chat.startStream (%s); streaming with chat.update",
                               _why(exc))
                self.bot.native_streaming = False
                self.native = False
        await self._flush_update()

    async def _flush_native(self) -> None:
        text = self._text
        new = text[self._sent:]
        if not new:
            return
        p = self.place
        if not self._streaming:
            response = await self.client.chat_startStream(
                channel=p.channel, thread_ts=p.thread_ts, markdown_text=new,
                recipient_user_id=p.user, recipient_team_id=p.team,
            )
            self.ts = response["ts"]
            self._streaming = True
        else:
            await self.client.chat_appendStream(channel=p.channel, ts=self.ts, markdown_text=new)
        self._sent = len(text)

    async def _flush_update(self) -> None:
        preview = render.to_mrkdwn(self._text)
        if len(preview) > PREVIEW_CHARS:
            preview = preview[:PREVIEW_CHARS]
        preview += texts.STREAMING_CURSOR
        if self.ts is None:
            await self._post(text=preview)
        else:
            await self.client.chat_update(channel=self.place.channel, ts=self.ts, text=preview)
        self._last_edit = time.monotonic()

    async def _stop_stream(self, blocks: list[dict[str, Any]] | None = None) -> None:
        rest = self._text[self._sent:]
        self._streaming = False
        await self.client.chat_stopStream(
            channel=self.place.channel, ts=self.ts, markdown_text=rest or None, blocks=blocks,
        )
        self._sent = len(self._text)

    async def _post(self, **kwargs: Any) -> None:
        response = await self.client.chat_postMessage(
            channel=self.place.channel, thread_ts=self.place.thread_ts, **kwargs
        )
        self.ts = response["ts"]


def _why(exc: SlackClientError) -> str:
    """A Slack error in a few words (the API's error code), never the request or its token."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown error"))
    return type(exc).__name__


async def answer_privately(bot: SlackBot, respond, place: Place, question: str) -> None:
    """Answer a slash command where the bot cannot post (a DM between people, a channel it is
    not in): the whole answer as one ephemeral message through the command's ``respond``."""
    try:
        decision = await bot.rate_limiter.hit(place.user)
        if not decision.allowed:
            await respond(text=texts.rate_limited(decision.retry_after_s), response_type="ephemeral")
            return
        final: Answer | None = None
        async with aclosing(bot.pipeline.stream(question, (),
                                                **await bot.source_filter(place.channel))) as parts:
            async for part in parts:
                if isinstance(part, Answer):
                    final = part
        if final is None:
            raise RuntimeError("the answer pipeline ended without an answer")
        answer_id = new_answer_id()
        await bot.feedback.remember_answer(_record(answer_id, question, final, place))
        s = bot.settings
        await respond(
            text=render.plain_text(final.text), response_type="ephemeral",
            blocks=render.answer_blocks(final, answer_id, max_sources=s.answer.max_sources,
                                        wrong_source_button=s.slack.wrong_source_button),
        )
    except Exception:  # noqa: BLE001 - the user always hears back
        error_id = new_error_id()
        logger.exception("Answering a command failed (error id %s)", error_id)
        with contextlib.suppress(Exception):
            await respond(text=texts.error(error_id), response_type="ephemeral")

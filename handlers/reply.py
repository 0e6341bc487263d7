"""Answering one question in Slack: progress, the streamed reply, the final Block Kit message.

Every surface (mention, DM, thread follow-up, assistant pane, slash command) ends here, after
it has parsed its payload into a :class:`handlers.parse.Place`. Guarantees:

- exactly one reply message per question (streaming edits that one message; a post or stream
  whose response was lost is looked up before anything is sent again);
- never a silent failure: any error replaces the reply with a short apology and an error id that
  is also in the log, next to the traceback.

Streaming: with ``slack.streaming = native`` the text goes out through ``chat.startStream`` /
``appendStream`` / ``stopStream`` (falling back to the next mode, for good, the first time Slack
refuses); otherwise the first text is posted and then edited with ``chat.update``. Either way
at most one update per ``slack.update_interval_s``, and the final message is rendered whole
(linked citations, sources, buttons) with one last ``chat.update`` (in update mode, that one too
keeps the interval). A one-piece answer (extractive or "not covered") is one ``chat.postMessage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.answer.pipeline import Answer
from bot.service import conversation as service
from handlers import render, texts
from handlers.parse import Place
from handlers.progress import Progress, post_ephemeral, why

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

# The first text waits this long before it is sent, so that an answer arriving in one piece
# goes out as one finished message instead of a stream of one update.
FIRST_FLUSH_S = 0.25
# Intermediate (update-mode) text is cut to this many characters; the final message is whole.
PREVIEW_CHARS = 3500
# The final edit of a streamed answer is tried this often before the reply is left as shown.
FINAL_UPDATE_TRIES = 3
# What a Web API call raises: Slack's answer, or a connection that dropped or timed out.
_SEND_ERRORS = (SlackClientError, aiohttp.ClientError, TimeoutError)


def neutral(place: Place) -> service.Place:
    """The platform-neutral place of a Slack question."""
    return service.Place(
        conversation=place.channel, thread=place.thread_ts, user=place.user,
        memory=place.conversation, workspace=place.team, platform="slack",
        direct=place.channel.startswith("D"),
    )


def notice_text(notice: service.Notice) -> str:
    return texts.EMPTY_QUESTION if notice.reason == "empty" else notice.text


def membership(client: AsyncWebClient, place: Place):
    """Whether the asker is a member of the channel, asked of Slack (``conversations.members``);
    a failed check counts as no. None in a DM, where the asker is a member by definition."""
    if place.channel.startswith("D"):
        return None

    async def check() -> bool:
        try:
            cursor = None
            while True:
                # POST, as every lorebot call (Slack accepts both; proxies and the fake too).
                page = await client.api_call("conversations.members", data={
                    "channel": place.channel, "limit": 1000, **({"cursor": cursor} if cursor else {})})
                if place.user in (page.get("members") or []):
                    return True
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return False
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("Could not check membership of %s in %s (%s): public sources only",
                           place.user, place.channel, why(exc))
            return False

    return check


async def answer_question(bot: SlackBot, client: AsyncWebClient, place: Place, question: str) -> None:
    """Answer ``question`` at ``place``: one reply, streamed, with sources and feedback buttons.
    Cancelled (shutdown past its drain), it tells the asker to ask again."""
    writer = ReplyWriter(bot, client, place)
    progress = Progress(bot, client, place)
    try:
        if bot.stopping:
            await writer.post_text(texts.RESTARTING)
            return
        async for event in bot.service.answer(question, neutral(place),
                                              member=membership(client, place)):
            if isinstance(event, service.Status):
                await progress.start()
            elif isinstance(event, service.Delta):
                writer.add(event.text)
            elif isinstance(event, service.Final):
                await writer.finish(event.answer, event.answer_id)
            elif isinstance(event, service.Notice):
                await writer.post_text(notice_text(event))
            elif isinstance(event, service.Refused):
                await post_ephemeral(client, place, texts.rate_limited(event.retry_after_s))
            elif isinstance(event, service.Failed):
                await writer.fail(texts.error(event.error_id))
    except asyncio.CancelledError:
        logger.warning("Answer in %s cut short by shutdown: telling the asker", place.channel)
        await asyncio.shield(writer.fail(texts.RESTARTING))
        raise
    except Exception:  # noqa: BLE001 - a reply that could not be written still gets an id
        error_id = service.new_error_id()
        logger.exception("Replying failed in %s (error id %s)", place.channel, error_id)
        await writer.fail(texts.error(error_id))
    finally:
        await progress.stop()


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
        self.shown = False  # the answer's text is on screen: never replace it with an error

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
                await self._stop_stream_once(blocks=footer)
            else:
                # Edits stay at most one per interval, the final one included (Slack rate-limits
                # chat.update); the text is already on screen, only links and buttons wait.
                await asyncio.sleep(max(0.0, self._last_edit + self.interval_s - time.monotonic()))
            await self._update_final(**kwargs)

    async def post_text(self, text: str) -> None:
        """A reply that is just a short text (help, empty question)."""
        await self._post(text=text, blocks=render.text_blocks(text))

    async def fail(self, text: str) -> None:
        """Turn the reply into ``text`` (an error notice); never raises."""
        await self._stop_flushing()
        async with self._lock:
            if self.shown and self.ts is not None:
                # The answer is on screen (only its final formatting failed): say so beside
                # it instead of replacing it.
                with contextlib.suppress(SlackClientError, aiohttp.ClientError, TimeoutError):
                    await self.client.chat_postMessage(channel=self.place.channel,
                                                       thread_ts=self.place.thread_ts, text=text)
                return
            try:
                if self.ts is not None:
                    if self._streaming:
                        with contextlib.suppress(*_SEND_ERRORS):
                            await self._stop_stream_once()
                    await self.client.chat_update(
                        channel=self.place.channel, ts=self.ts, text=text,
                        blocks=render.text_blocks(text),
                    )
                    return
            except _SEND_ERRORS as exc:
                logger.warning("Could not edit the reply into an error notice: %s", why(exc))
            try:
                await self._post(text=text, blocks=render.text_blocks(text))
            except _SEND_ERRORS as exc:
                logger.error("Could not post the error notice in %s: %s", self.place.channel,
                             why(exc))

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
                except _SEND_ERRORS as exc:
                    # A lost intermediate update is harmless: the final one carries everything
                    # (a message whose creation may have landed is looked up, see _landed).
                    logger.warning("Streaming update failed in %s: %s", self.place.channel, why(exc))
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
        try:
            if self._flusher is not None:
                await self._flusher
        except Exception:  # noqa: BLE001 - the final message carries everything anyway
            logger.exception("Streaming the reply in %s failed", self.place.channel)

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
                               why(exc))
                self.bot.native_streaming = False
                self.native = False
        await self._flush_update()

    async def _flush_native(self) -> None:
        text = self._text
        new = text[self._sent:]
        if not new:
            return
        p = self.place
        # Escaped (an LLM's "<!channel>" is shown, not acted on) and in pieces within Slack's
        # markdown_text limit.
        pieces = render.stream_pieces(render.stream_chunk(new))
        if not self._streaming:
            first, pieces = pieces[0], pieces[1:]
            try:
                response = await self.client.chat_startStream(
                    channel=p.channel, thread_ts=p.thread_ts, markdown_text=first,
                    recipient_user_id=p.user, recipient_team_id=p.team,
                )
            except (aiohttp.ClientError, TimeoutError):
                # The stream may have started: adopt it, or a second one would answer twice.
                if not (landed := await self._landed()):
                    raise  # not there (the next flush starts it) or cannot tell
                logger.warning("A stream in %s started though its response was lost", p.channel)
                response = {"ts": landed}
            self.ts = response["ts"]
            self._streaming = True
        for piece in pieces:
            await self.client.chat_appendStream(channel=p.channel, ts=self.ts, markdown_text=piece)
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
        pieces = render.stream_pieces(render.stream_chunk(rest)) if rest else [None]
        for piece in pieces[:-1]:
            await self.client.chat_appendStream(channel=self.place.channel, ts=self.ts,
                                                markdown_text=piece)
        await self.client.chat_stopStream(
            channel=self.place.channel, ts=self.ts, markdown_text=pieces[-1], blocks=blocks,
        )
        self._streaming = False
        self._sent = len(self._text)

    async def _stop_stream_once(self, blocks: list[dict[str, Any]] | None = None) -> None:
        """Stop the stream; when the connection drops, once more: Slack then says the stream
        is stopped already if the first call landed, and either way the stream ends."""
        try:
            await self._stop_stream(blocks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("chat.stopStream in %s lost its response (%s): once more",
                           self.place.channel, why(exc))
            try:
                await self._stop_stream(blocks)
            except SlackApiError as again:
                if again.response.get("error") != "message_not_in_streaming_state":
                    raise
                self._streaming, self._sent = False, len(self._text)  # the first one landed

    async def _update_final(self, **kwargs: Any) -> None:
        """The final edit, retried: an edit is idempotent, and the text is on screen already,
        so a failure here must not turn the answer into an error notice."""
        for attempt in range(FINAL_UPDATE_TRIES):
            try:
                await self.client.chat_update(channel=self.place.channel, ts=self.ts, **kwargs)
                return
            except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
                if attempt + 1 == FINAL_UPDATE_TRIES:
                    self.shown = True
                    raise
                logger.warning("Final edit of the reply in %s failed (%s); retrying",
                               self.place.channel, why(exc))
                await asyncio.sleep(0.5 * 2**attempt)

    async def _post(self, **kwargs: Any) -> None:
        """Post the reply once. A post whose response was lost (the connection dropped) may
        have landed: the thread is checked for it before anything is posted again."""
        try:
            response = await self.client.chat_postMessage(
                channel=self.place.channel, thread_ts=self.place.thread_ts, **kwargs
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            landed = await self._landed()
            if landed is None:
                raise  # cannot tell: posting again could answer twice
            if landed:
                logger.warning("A reply in %s landed though its response was lost (%s)",
                               self.place.channel, type(exc).__name__)
                self.ts = landed
                await self.client.chat_update(channel=self.place.channel, ts=self.ts, **kwargs)
                return
            response = await self.client.chat_postMessage(
                channel=self.place.channel, thread_ts=self.place.thread_ts, **kwargs)
        self.ts = response["ts"]

    async def _landed(self) -> str | None | bool:
        """The ts of the first bot message after the question in its thread (in a DM without
        one, the top level): a reply whose response was lost. False: none; None: unreadable."""
        p = self.place
        if (after := p.question_ts or p.thread_ts) is None:
            return None
        method, where = (("conversations.replies", {"ts": p.thread_ts}) if p.thread_ts
                         else ("conversations.history", {}))
        try:
            page = await self.client.api_call(method, data={
                "channel": p.channel, "oldest": after, "limit": 200, **where})
        except _SEND_ERRORS as exc:
            logger.error("Could not check whether a reply in %s landed (%s): not re-sent",
                         p.channel, why(exc))
            return None
        found = [m["ts"] for m in page.get("messages") or []
                 if m.get("bot_id") and float(m["ts"]) > float(after)]
        return min(found, key=float) if found else False

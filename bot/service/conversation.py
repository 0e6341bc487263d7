"""The conversation service: one question in, answer events out, for any messaging platform.

A surface (Slack's listeners, a Feishu/Lark adapter, the terminal) parses its payload into a
:class:`Place` and the question's text, then:

- :meth:`ConversationService.claim` once per delivery: True only the first time (platforms
  deliver twice and retry; the claim survives a Redis outage, see ``bot.state.stores``);
- :meth:`ConversationService.is_followup` for a message in a thread without a mention;
- :meth:`ConversationService.answer`, and renders the events it yields: :class:`Status`, then
  :class:`Delta` text, then exactly one of :class:`Final` (the answer with citations, already
  remembered for feedback and follow-ups), :class:`Notice` (a short reply that is not an
  answer), :class:`Refused` (for the asker alone: the rate limit) or :class:`Failed` (with an
  error id that is also in the log).

The channel policy fails closed: a conversation sees the public sources plus those allowed there,
an asker the platform does not confirm as a member of the conversation sees public ones only,
and when the policy cannot be read nothing is searched and the asker is told so.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

from bot.answer.pipeline import Answer
from bot.answer.turns import ConversationStore, Turn
from bot.sources.policy import ChannelPolicy, PolicyUnavailableError
from bot.state.feedback import AnswerRecord, FeedbackStore, SourceRef, new_answer_id
from bot.state.redis import RedisGuard
from bot.state.stores import Deduper, RateLimiter, ThreadRegistry

logger = logging.getLogger(__name__)

EMPTY_QUESTION = "Ask me a question about the team's documents, for example: how do I set up the VPN?"
POLICY_UNAVAILABLE = (
    ":warning: I cannot check right now which documents may be shown here (the source registry "
    "is unavailable), so I am not answering from them. Please ask again in a minute.")

# Yes/no/unknown from the platform: is the asker a member of the conversation? Is the bot
# already in this thread?
PlatformCheck = Callable[[], Awaitable[bool | None]]


class Answerer(Protocol):
    """What the service needs from :class:`bot.answer.pipeline.AnswerPipeline`."""

    def stream(self, question: str, history: Sequence[Turn] = (),
               sources: Sequence[str] | None = None) -> AsyncIterator[str | Answer]: ...


def new_error_id() -> str:
    """A short id shown to the user and logged next to the failure."""
    return uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class Place:
    """Where a question was asked, on any platform.

    ``conversation`` is the channel or chat; ``thread`` the thread the answer goes into (None:
    the top level of a direct conversation); ``memory`` keys the conversation memory.
    """

    conversation: str
    thread: str | None
    user: str
    memory: str
    workspace: str | None = None
    platform: str = "slack"
    direct: bool = False  # a one-to-one conversation with the bot


@dataclass(frozen=True)
class Status:
    """Working on it (show a reaction or a status line)."""


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Final:
    answer: Answer
    answer_id: str


@dataclass(frozen=True)
class Notice:
    """A short reply that is not an answer: ``reason`` "empty" (no question) or "policy" (the
    channel policy cannot be read); ``text`` is a default wording a surface may replace."""

    reason: str
    text: str


@dataclass(frozen=True)
class Refused:
    """A note for the asker alone; nothing is posted in the conversation."""

    reason: str
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class Failed:
    error_id: str


Event = Status | Delta | Final | Notice | Refused | Failed


class ConversationService:
    """Dedupe, channel policy, rate limit and thread memory around the answer pipeline."""

    def __init__(self, pipeline: Answerer, *, guard: RedisGuard, dedupe: Deduper,
                 rate_limiter: RateLimiter, threads: ThreadRegistry,
                 conversations: ConversationStore, feedback: FeedbackStore,
                 policy: ChannelPolicy | None = None) -> None:
        self.pipeline = pipeline
        self.guard = guard
        self.dedupe = dedupe
        self.rate_limiter = rate_limiter
        self.threads = threads
        self.conversations = conversations
        self.feedback = feedback
        self.policy = policy

    async def claim(self, *keys: str) -> bool:
        """True the first time any of ``keys`` (message and delivery ids) is seen."""
        return await self.dedupe.claim(*keys)

    async def is_followup(self, place: Place, *, bot_in_thread: PlatformCheck | None = None) -> bool:
        """Whether ``place``'s thread is one the bot answered in. When that cannot be known
        from Redis (down, and this process never saw the thread), the platform is asked."""
        if place.thread is None:
            return False
        known = await self.threads.contains(place.memory)
        if known is None and bot_in_thread is not None:
            known = await bot_in_thread()
            if known:
                await self.threads.add(place.memory)
        return bool(known)

    async def sources(self, place: Place, member: PlatformCheck | None = None) -> dict[str, Any]:
        """``{"sources": [...]}`` for the pipeline when the policy restricts what a question at
        ``place`` may search, ``{}`` when nothing is. Raises :class:`PolicyUnavailableError`."""
        if self.policy is None:
            return {}
        channel = place.conversation

        async def op(_client) -> list[str] | None:
            return await self.policy.sources_for(channel)

        async def fallback() -> list[str] | None:
            return await self.policy.sources_for(channel, cached=True)

        allowed = await self.guard.run("channel policy", op, fallback)
        if not place.direct and member is not None:
            public = await self._public()
            # Only where the conversation sees more than the public sources is the asker's
            # membership worth a platform call; not confirmed: public sources only.
            if allowed != public and not await member():
                logger.info("%s is not a member of %s: public sources only", place.user, channel)
                allowed = public
        return {} if allowed is None else {"sources": allowed}

    async def _public(self) -> list[str] | None:
        async def op(_client) -> list[str] | None:
            return await self.policy.sources_for(None)

        async def fallback() -> list[str] | None:
            return await self.policy.sources_for(None, cached=True)

        return await self.guard.run("channel policy", op, fallback)

    async def answer(self, question: str, place: Place, *, member: PlatformCheck | None = None,
                     remember: bool = True) -> AsyncIterator[Event]:
        """Answer ``question`` asked at ``place``; see the module docstring for the events.
        ``member``: whether the asker belongs to the conversation (None: do not check).
        ``remember``: keep the turn as conversation memory (False for a private answer)."""
        try:
            if not question.strip():
                yield Notice("empty", EMPTY_QUESTION)
                return
            decision = await self.rate_limiter.hit(place.user)
            if not decision.allowed:
                logger.info("Rate limit hit by %s in %s", place.user, place.conversation)
                yield Refused("rate_limited", decision.retry_after_s)
                return
            yield Status()
            try:
                scope = await self.sources(place, member)
            except PolicyUnavailableError as exc:
                logger.error("Not answering in %s: %s", place.conversation, exc)
                yield Notice("policy", POLICY_UNAVAILABLE)
                return
            if remember and place.thread:
                await self.threads.add(place.memory)
            history = await self.conversations.get(place.memory) if remember else []
            final: Answer | None = None
            async with aclosing(self.pipeline.stream(question, history, **scope)) as parts:
                async for part in parts:
                    if isinstance(part, str):
                        yield Delta(part)
                    else:
                        final = part
            if final is None:
                raise RuntimeError("the answer pipeline ended without an answer")
            answer_id = new_answer_id()
            # Remembered before the buttons exist, so a quick click always finds the answer.
            await self.feedback.remember_answer(_record(answer_id, question, final, place))
            if remember:
                await self.conversations.append(place.memory, Turn(question, final.text))
            logger.info("Answered in %s (%s mode, %d sources)", place.conversation, final.mode,
                        len(final.citations))
            yield Final(final, answer_id)
        except Exception:  # noqa: BLE001 - whatever failed, the asker hears back with an id
            error_id = new_error_id()
            logger.exception("Answering failed in %s (error id %s)", place.conversation, error_id)
            yield Failed(error_id)


def _record(answer_id: str, question: str, answer: Answer, place: Place) -> AnswerRecord:
    return AnswerRecord(
        answer_id=answer_id, question=question, answer=answer.text, mode=answer.mode,
        sources=tuple(SourceRef(c.n, c.title, c.url, c.path) for c in answer.citations),
        user=place.user, channel=place.conversation, thread_ts=place.thread,
        team=place.workspace, query=answer.query,
    )

"""The Slack side of the bot: :class:`SlackBot` and the Web API client.

:class:`SlackBot` is everything the listeners in ``handlers/`` call into: the answer pipeline
and the Redis-backed state (dedupe, rate limit, threads, conversations, feedback). It also owns
the background tasks that answer questions, so an event is acknowledged at once and a shutdown
can wait for answers in flight.

The bolt app is built by ``handlers.app.build_app``; the HTTP server is in ``bot.slack.server``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.answer.turns import ConversationStore
from bot.service.conversation import Answerer, ConversationService, new_error_id  # noqa: F401 - re-exported for handlers
from bot.service.inflight import InFlight
from bot.settings import Settings
from bot.state.feedback import FeedbackStore
from bot.state.redis import RedisGuard
from bot.state.stores import (
    Deduper,
    RateLimiter,
    RedisConversationStore,
    ThreadRegistry,
)

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"


class SlackConfigError(Exception):
    """The Slack settings cannot run the requested mode; the message names the missing setting."""


@dataclass
class SlackBot:
    """The application side of the Slack listeners."""

    settings: Settings
    pipeline: Answerer
    guard: RedisGuard
    conversations: ConversationStore
    threads: ThreadRegistry
    dedupe: Deduper
    rate_limiter: RateLimiter
    feedback: FeedbackStore
    # Flipped off for the whole process the first time Slack refuses chat.startStream.
    native_streaming: bool = True
    # One connection pool for every Web API call (slack_sdk opens a session per call otherwise).
    http_session: aiohttp.ClientSession | None = None
    # Knowledge sources: the registry, the reindex job queue and the channel policy
    # (bot.sources.registry, bot.jobs.queue); `remove_documents(name)` deletes a source's documents from the
    # index (set by the runtime that owns the index; None: removal only unregisters).
    sources: Any = None
    jobs: Any = None
    policy: Any = None
    remove_documents: Any = None
    # The platform-neutral conversation service over the stores above (built by create()).
    service: ConversationService | None = None
    inflight: InFlight = field(default_factory=InFlight)

    @classmethod
    def create(cls, settings: Settings, pipeline: Answerer, redis_client) -> SlackBot:
        """Build the bot's stores on ``redis_client`` (a ``redis.asyncio.Redis``)."""
        r = settings.redis
        guard = RedisGuard(redis_client, r.key_prefix)
        bot = cls(
            settings=settings,
            pipeline=pipeline,
            guard=guard,
            conversations=RedisConversationStore(guard, r.conversation_turns, r.conversation_ttl_s),
            threads=ThreadRegistry(guard, r.conversation_ttl_s),
            dedupe=Deduper(guard, r.dedupe_ttl_s),
            rate_limiter=RateLimiter(guard, settings.slack.rate_limit,
                                     settings.slack.rate_limit_window_s),
            feedback=FeedbackStore(guard, settings.data_dir / "feedback.jsonl",
                                   answer_ttl_s=r.answer_ttl_s),
            native_streaming=settings.slack.streaming == "native",
            **_source_services(settings, pipeline, redis_client),
        )
        bot.service = ConversationService(
            pipeline, guard=guard, dedupe=bot.dedupe, rate_limiter=bot.rate_limiter,
            threads=bot.threads, conversations=bot.conversations, feedback=bot.feedback,
            policy=bot.policy)
        return bot

    async def warm_up(self) -> None:
        """Import now what the first answer would otherwise import (seconds under load): the
        ``openai`` package loads its chat resources and stream parser lazily, on first use."""
        if getattr(self.pipeline, "llm", None) is not None:
            await asyncio.to_thread(_preload, _LLM_MODULES)

    async def aclose(self) -> None:
        """Let answers in flight finish, then close the Slack HTTP session."""
        await self.drain()
        if self.http_session is not None and not self.http_session.closed:
            await self.http_session.close()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        """Run ``coro`` in the background, keeping a reference until it is done."""
        return self.inflight.spawn(coro, name)

    @property
    def busy(self) -> int:
        """Answers in flight."""
        return len(self.inflight)

    @property
    def stopping(self) -> bool:
        """Shutdown has begun: new questions get a "restarting" reply instead of an answer."""
        return self.inflight.stopping

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Before shutting down: see :meth:`bot.service.inflight.InFlight.drain`."""
        await self.inflight.drain(timeout_s)


def _source_services(settings: Settings, pipeline: Answerer, redis_client) -> dict[str, Any]:
    from bot.jobs.queue import JobQueue
    from bot.sources.policy import ChannelPolicy
    from bot.sources.registry import SourceRegistry

    prefix = settings.redis.key_prefix
    registry = SourceRegistry(redis_client, prefix)
    index = getattr(getattr(pipeline, "retriever", None), "index", None)

    async def indexed() -> list[str]:
        return [s.source for s in await index.source_stats()]

    has_index = index is not None and hasattr(index, "source_stats")
    return {
        "sources": registry,
        "jobs": JobQueue(redis_client, prefix, lock_ttl_s=settings.sources.job_lock_ttl_s,
                         max_attempts=settings.sources.job_max_attempts),
        "policy": ChannelPolicy(registry, indexed if has_index else None,
                            snapshot=settings.data_dir / "policy-snapshot.json"),
    }


_LLM_MODULES = (
    "openai.resources.chat.completions", "openai.lib.streaming.chat", "jiter",
    "anyio._backends._asyncio", "anyio.streams.memory", "anyio.streams.stapled",
)


def _preload(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # another version of the package: nothing to warm up
            logger.debug("Nothing to preload: %s", name)


def web_client(settings: Settings, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client, pointed at ``slack.api_url`` when set (tests, proxies). Slack's
    429 answers are retried after their Retry-After, twice; nothing else is."""
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    # Only 429s are retried: slack_sdk's default connection-error retry re-sends a
    # chat.postMessage whose response was lost, and Slack then shows the answer twice
    # (handlers.reply checks the thread instead).
    return AsyncWebClient(token=token, base_url=settings.slack.api_url or DEFAULT_API_URL,
                          session=session,
                          retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])

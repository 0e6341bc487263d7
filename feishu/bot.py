"""The Feishu/Lark side of the bot: :class:`LarkBot`, what the event handlers call into.

It holds the platform-neutral :class:`ConversationService` built on the same Redis stores as
Slack's (dedupe, rate limit, threads, conversation memory, feedback, the channel policy), the
Open API client, and the background tasks that answer questions, so that a callback is
acknowledged at once (Feishu retries one not answered within three seconds) and a shutdown can
wait for the answers in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from bot.answer.turns import ConversationStore
from bot.jobs.queue import JobQueue
from bot.service.conversation import Answerer, ConversationService
from bot.service.inflight import InFlight
from bot.settings import Settings
from bot.sources.policy import ChannelPolicy
from bot.sources.registry import SourceRegistry
from bot.state.feedback import FeedbackStore
from bot.state.redis import RedisGuard
from bot.state.stores import (
    Deduper,
    RateLimiter,
    RedisConversationStore,
    ThreadRegistry,
)
from feishu.api import LarkApi

logger = logging.getLogger(__name__)


@dataclass
class LarkBot:
    settings: Settings
    service: ConversationService
    api: LarkApi
    guard: RedisGuard
    feedback: FeedbackStore
    sources: SourceRegistry
    policy: ChannelPolicy
    jobs: JobQueue
    # The bot's own open_id (bot/v3/info): a group message mentioning it is a question.
    open_id: str | None = None
    # Deletes a source's documents from the index (set by the runtime that owns the index;
    # None: `/lorebot remove` only unregisters the source).
    remove_documents: Any = None
    inflight: InFlight = field(default_factory=InFlight)

    @classmethod
    def create(cls, settings: Settings, pipeline: Answerer, redis_client,
               api: LarkApi | None = None) -> LarkBot:
        """The bot's stores on ``redis_client`` (a ``redis.asyncio.Redis``), shared with the
        Slack bot when both run: the same registry, policy, feedback and memory."""
        r, lark = settings.redis, settings.lark
        guard = RedisGuard(redis_client, r.key_prefix)
        registry = SourceRegistry(redis_client, r.key_prefix)
        index = getattr(getattr(pipeline, "retriever", None), "index", None)

        async def indexed() -> list[str]:
            return [s.source for s in await index.source_stats()]

        policy = ChannelPolicy(registry, indexed if hasattr(index, "source_stats") else None,
                               snapshot=settings.data_dir / "policy-snapshot.json")
        conversations: ConversationStore = RedisConversationStore(
            guard, r.conversation_turns, r.conversation_ttl_s)
        feedback = FeedbackStore(guard, settings.data_dir / "feedback.jsonl",
                                 answer_ttl_s=r.answer_ttl_s)
        service = ConversationService(
            pipeline, guard=guard, dedupe=Deduper(guard, r.dedupe_ttl_s),
            rate_limiter=RateLimiter(guard, lark.rate_limit, lark.rate_limit_window_s),
            threads=ThreadRegistry(guard, r.conversation_ttl_s), conversations=conversations,
            feedback=feedback, policy=policy)
        jobs = JobQueue(redis_client, r.key_prefix, lock_ttl_s=settings.sources.job_lock_ttl_s,
                        max_attempts=settings.sources.job_max_attempts)
        return cls(settings=settings, service=service, api=api or LarkApi(lark), guard=guard,
                   feedback=feedback, sources=registry, policy=policy, jobs=jobs)

    async def start(self) -> None:
        """Learn the bot's open_id; fails (LarkApiError) when the app id or secret is wrong."""
        self.open_id = await self.api.bot_open_id()
        logger.info("Connected to Feishu/Lark as bot %s", self.open_id)

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


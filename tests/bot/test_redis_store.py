"""Redis state against a real Valkey: dedupe, rate limit, threads, conversation memory, the
guard's fallback when Redis is down, and the embedded server's lifecycle."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis as sync_redis
from pydantic import SecretStr

from bot.answer.turns import Turn
from bot.state.stores import Deduper, RateLimiter, RedisConversationStore, ThreadRegistry
from bot.state.redis import RedisGuard, make_client, open_redis, redacted
from bot.state.redis import redis_url as resolve_redis_url
from bot.settings import RedisSettings, Settings
from tests.support.valkey import redis_url, valkey_server  # noqa: F401 - fixtures

SETTINGS = RedisSettings(timeout_s=0.5)


@pytest.fixture
async def guard(redis_url):  # noqa: F811
    client = make_client(redis_url, SETTINGS)
    yield RedisGuard(client, "t:")
    await client.aclose()


@pytest.fixture
async def dead_guard(tmp_path):
    client = make_client(f"unix://{tmp_path}/nothing.sock", SETTINGS)
    yield RedisGuard(client, "t:", retry_after_s=60)
    await client.aclose()


async def test_dedupe_claims_once_per_key(guard):
    dedupe = Deduper(guard, ttl_s=120)
    assert await dedupe.claim("msg:C1:1", "evt:Ev1")
    assert not await dedupe.claim("msg:C1:1", "evt:Ev2")  # same message, other delivery
    assert not await dedupe.claim("msg:C1:9", "evt:Ev1")  # a retry of the first delivery
    assert await dedupe.claim("msg:C1:2")
    assert 0 < await guard.client.ttl("t:seen:msg:C1:1") <= 120


async def test_dedupe_is_atomic_under_concurrency(guard):
    dedupe = Deduper(guard, ttl_s=120)
    results = await asyncio.gather(*[dedupe.claim("msg:C1:5") for _ in range(50)])
    assert results.count(True) == 1


async def test_rate_limit_is_a_sliding_window_per_user(guard):
    limiter = RateLimiter(guard, limit=3, window_s=1)
    decisions = [await limiter.hit("alice") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after_s == 1
    assert (await limiter.hit("bob")).allowed
    await asyncio.sleep(1.05)
    assert (await limiter.hit("alice")).allowed


async def test_rate_limit_zero_means_unlimited(guard):
    limiter = RateLimiter(guard, limit=0, window_s=60)
    assert all([(await limiter.hit("a")).allowed for _ in range(20)])


async def test_conversation_store_keeps_the_last_turns_with_a_ttl(guard):
    store = RedisConversationStore(guard, max_turns=3, ttl_s=600)
    assert await store.get("T:C:1") == []
    for i in range(5):
        await store.append("T:C:1", Turn(f"q{i} — ünïcode", f"a{i}"))
    assert await store.get("T:C:1") == [Turn(f"q{i} — ünïcode", f"a{i}") for i in (2, 3, 4)]
    assert 0 < await guard.client.ttl("t:conv:T:C:1") <= 600
    # Another process (another store on the same Redis) sees the same conversation.
    assert await RedisConversationStore(guard, 3, 600).get("T:C:1") == await store.get("T:C:1")
    assert await store.get("T:C:2") == []


async def test_thread_registry(guard):
    threads = ThreadRegistry(guard, ttl_s=60)
    assert not await threads.contains("T:C:1")
    await threads.add("T:C:1")
    assert await threads.contains("T:C:1")


async def test_redis_down_falls_back_in_process_and_logs_once(dead_guard, caplog):
    caplog.set_level(logging.WARNING, logger="bot.state.redis")
    dedupe = Deduper(dead_guard, ttl_s=60)
    assert await dedupe.claim("msg:C:1")
    assert not await dedupe.claim("msg:C:1")
    store = RedisConversationStore(dead_guard, max_turns=2, ttl_s=60)
    await store.append("k", Turn("q", "a"))
    assert await store.get("k") == [Turn("q", "a")]
    limiter = RateLimiter(dead_guard, limit=1, window_s=60)
    assert (await limiter.hit("u")).allowed and not (await limiter.hit("u")).allowed
    threads = ThreadRegistry(dead_guard, ttl_s=60)
    await threads.add("k")
    assert await threads.contains("k")
    assert not dead_guard.available
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["Redis unavailable"]


async def test_redis_url_resolution(tmp_path):
    s = Settings(_env_file=None, data_dir=tmp_path)
    assert resolve_redis_url(s, environ={}) is None
    assert resolve_redis_url(s, environ={"REDIS_URL": "redis://r:6379/1"}) == "redis://r:6379/1"
    s = Settings(_env_file=None, data_dir=tmp_path,
                 redis=RedisSettings(url=SecretStr("redis://:pw@h:1/0")))
    assert resolve_redis_url(s, environ={"REDIS_URL": "redis://other"}) == "redis://:pw@h:1/0"
    assert redacted("redis://:pw@h:1/0") == "redis://***@h:1/0"
    assert "pw" not in repr(s)


async def test_embedded_valkey_persists_under_the_data_dir(tmp_path):
    s = Settings(_env_file=None, data_dir=tmp_path / "d")
    handle = await open_redis(s, environ={})
    assert handle.embedded is not None and handle.embedded.owned
    assert handle.embedded.socket_path.exists()
    # A second process on the same data dir shares the running server instead of starting one.
    second = await open_redis(s, environ={})
    assert not second.embedded.owned
    await second.client.set("shared", "yes")
    await second.aclose()
    await handle.client.rpush("lorebot:feedback:test", "kept")
    await handle.aclose()
    assert not handle.embedded.socket_path.exists() or not _alive(handle.embedded.socket_path)
    assert (tmp_path / "d" / "valkey" / "appendonlydir").is_dir()

    again = await open_redis(s, environ={})
    try:
        assert again.embedded.owned
        assert await again.client.lrange("lorebot:feedback:test", 0, -1) == ["kept"]
        assert await again.client.get("shared") == "yes"
    finally:
        await again.aclose()


async def test_configured_redis_that_is_down_is_not_fatal(tmp_path, caplog):
    s = Settings(_env_file=None, data_dir=tmp_path,
                 redis=RedisSettings(url=SecretStr(f"unix://{tmp_path}/none.sock"), timeout_s=0.2))
    handle = await open_redis(s, environ={})
    try:
        assert handle.embedded is None
        assert any("does not answer" in r.getMessage() for r in caplog.records)
    finally:
        await handle.aclose()


def _alive(path) -> bool:
    try:
        return bool(sync_redis.Redis(unix_socket_path=str(path), socket_timeout=0.5).ping())
    except sync_redis.RedisError:
        return False

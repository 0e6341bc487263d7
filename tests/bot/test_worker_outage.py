"""A worker whose Redis goes away backs off and says so once, then once again when it is back
(it used to log a traceback five times a second)."""

from __future__ import annotations

import asyncio
import logging

from bot.jobs.queue import JobQueue
from bot.jobs.worker import Worker
from bot.settings import RedisSettings
from bot.sources.registry import SourceRegistry
from bot.state.redis import make_client
from tests.support.valkey import start_valkey, url_of


async def _never_runs(source, progress):  # pragma: no cover - no job is queued
    raise AssertionError("no job expected")


def test_backoff_doubles_and_is_capped():
    worker = Worker(None, None, _never_runs, poll_s=0.2, max_backoff_s=30)
    assert [worker.backoff(n) for n in (1, 2, 3, 4)] == [0.4, 0.8, 1.6, 3.2]
    assert worker.backoff(10) == worker.backoff(1000) == 30


async def test_worker_backs_off_and_logs_once_per_state_change(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="bot.jobs.worker")
    server = start_valkey(tmp_path / "valkey")
    client = make_client(url_of(server), RedisSettings(timeout_s=0.2))
    queue = JobQueue(client, "lorebot:")
    tries = 0
    heartbeat = queue.heartbeat

    async def counted(worker_id):
        nonlocal tries
        tries += 1
        return await heartbeat(worker_id)

    queue.heartbeat = counted
    worker = Worker(queue, SourceRegistry(client, "lorebot:"), _never_runs, worker_id="w",
                    poll_s=0.05, max_backoff_s=0.4)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.3)
        server.stop()
        tries = 0
        await asyncio.sleep(2.5)
        down_tries = tries
        server.start()
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
        await client.aclose()
        if server.is_running():
            server.stop()
    # Polling every 0.05 s would have tried about 50 times; the backoff tries about 8 times.
    assert 2 <= down_tries <= 12
    records = [r for r in caplog.records if r.levelno >= logging.INFO and "started" not in r.getMessage()]
    assert [r.levelname for r in records] == ["ERROR", "WARNING"], [r.getMessage() for r in records]
    assert "cannot reach the queue" in records[0].getMessage()
    assert "reaches the queue again" in records[1].getMessage()
    assert not any(r.exc_info for r in records)
    assert all("\n" not in r.getMessage() for r in records)


async def test_redis_lost_mid_job_does_not_kill_the_worker(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bot.jobs.worker")
    server = start_valkey(tmp_path / "valkey")
    client = make_client(url_of(server), RedisSettings(timeout_s=0.2))
    queue, registry = JobQueue(client, "lorebot:"), SourceRegistry(client, "lorebot:")
    (tmp_path / "kb").mkdir()
    from bot.sources.registry import Source

    await registry.add(Source("kb", "folder", str(tmp_path / "kb")))
    await queue.enqueue("kb", requested_by="test")

    async def run_job(source, progress):
        server.stop()  # Redis goes away while the job runs
        return {"added": 0}

    worker = Worker(queue, registry, run_job, worker_id="w", poll_s=0.05, max_backoff_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(1.5)
        assert not task.done(), task.exception() if task.done() else None
        server.start()
        await asyncio.sleep(1.0)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
        if server.is_running():
            server.stop()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("could not record the end of job" in m for m in messages)
    assert any("reaches the queue again" in m for m in messages)

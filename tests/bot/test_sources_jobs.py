"""The source registry and the reindex job queue on a real Valkey: persistence, the channel
policy, workers sharing one queue, one job per source, and a worker killed mid-job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bot.jobs.queue import JobQueue, wait_for
from bot.jobs.worker import Worker
from bot.state.redis import make_client
from bot.settings import RedisSettings
from bot.sources.policy import ChannelPolicy
from bot.sources.registry import Source, SourceRegistry, SourceRegistryError
from tests.support.valkey import redis_url, valkey_server  # noqa: F401
from tests.support.web_site import WebSite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
async def client(redis_url):  # noqa: F811
    c = make_client(redis_url, RedisSettings(timeout_s=5))
    yield c
    await c.aclose()


async def test_registry_add_list_remove_and_channels(client, tmp_path):
    reg = SourceRegistry(client)
    await reg.add(Source("handbook", "folder", str(tmp_path)))
    await reg.add(Source("secret", "crawl", "http://wiki.example/", public=False))
    with pytest.raises(SourceRegistryError, match="exists already"):
        await reg.add(Source("handbook", "folder", str(tmp_path)))
    with pytest.raises(SourceRegistryError, match="does not exist"):
        await reg.add(Source("nope", "folder", str(tmp_path / "missing")))
    with pytest.raises(SourceRegistryError, match="not valid"):
        await reg.add(Source("bad name", "folder", str(tmp_path)))
    assert [s.name for s in await reg.list()] == ["handbook", "secret"]

    async def indexed():
        return ["handbook", "secret", "cli-indexed"]

    policy = ChannelPolicy(reg, indexed)
    # Indexed but not registered (a lost registry, or never added): restricted until known.
    assert await policy.sources_for("C1") == ["handbook"]
    await reg.allow_channel("secret", "C1")
    assert await policy.sources_for("C1") is None or "secret" in await policy.sources_for("C1")
    assert "secret" not in await policy.sources_for("C2")
    await reg.deny_channel("secret", "C1")
    assert "secret" not in await policy.sources_for("C1")
    assert await reg.remove("secret") and not await reg.remove("secret")
    # "secret" is unregistered but still indexed, "cli-indexed" never was: neither is searched.
    assert await policy.sources_for("C2") == ["handbook"]
    (tmp_path.parent / f"{tmp_path.name}-cli").mkdir()  # not handbook's folder: refused then
    await reg.add(Source("cli-indexed", "folder", str(tmp_path.parent / f"{tmp_path.name}-cli")))

    async def registered_only():
        return ["handbook", "cli-indexed"]

    policy.indexed_sources = registered_only
    assert await policy.sources_for("C2") is None  # nothing restricted: no filter


async def test_registry_survives_a_server_restart(tmp_path):
    from bot.state.redis import EmbeddedValkey

    for step in ("write", "read"):
        server = EmbeddedValkey(tmp_path / "valkey")  # the bot's own embedded server (AOF)
        await asyncio.to_thread(server.start)
        try:
            c = make_client(server.url, RedisSettings(timeout_s=5))
            if step == "write":
                await SourceRegistry(c).add(Source("site", "crawl", "http://example.com/"))
            else:
                assert (await SourceRegistry(c).require("site")).location == "http://example.com/"
            await c.aclose()
        finally:
            await asyncio.to_thread(server.stop)


async def test_a_source_is_queued_once(client):
    queue = JobQueue(client)
    first, created = await queue.enqueue("a")
    again, created_again = await queue.enqueue("a")
    assert created and not created_again and again.id == first.id
    assert await queue.queued_ids() == [first.id]


async def test_two_workers_share_a_queue_and_never_run_one_source_twice_at_once(client):
    reg = SourceRegistry(client)
    names = [f"s{i}" for i in range(6)]
    for n in names:
        await reg.add(Source(n, "crawl", f"http://{n}.example/"))
    queue = JobQueue(client, lock_ttl_s=5)
    running: set[str] = set()
    runs: list[tuple[str, str]] = []

    def runner(worker_name):
        async def run(source, progress):
            assert source.name not in running, "two runs of one source at once"
            running.add(source.name)
            progress("indexing", 1, 2)
            await asyncio.sleep(0.15)
            running.discard(source.name)
            runs.append((worker_name, source.name))
            return {"added": 1, "updated": 0, "unchanged": 0, "removed": 0, "failed": [],
                    "chunks": 1, "seconds": 0.1}
        return run

    workers = [Worker(queue, reg, runner(w), worker_id=w, poll_s=0.05) for w in ("w1", "w2")]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    jobs = [(await queue.enqueue(n))[0] for n in names]
    done = [await wait_for(queue, j.id, 20) for j in jobs]
    # Once a job is done its source can be queued again, and is run again.
    again, created = await queue.enqueue("s0")
    assert created
    await wait_for(queue, again.id, 20)
    stop.set()
    await asyncio.gather(*tasks)
    assert all(j.state == "done" and j.summary["added"] == 1 for j in done)
    assert sorted(n for _, n in runs) == sorted([*names, "s0"])
    assert {w for w, _ in runs} == {"w1", "w2"}  # both took work
    assert (await reg.require("s1")).last_summary["chunks"] == 1


async def test_a_locked_source_waits_for_the_lock(client):
    reg = SourceRegistry(client)
    await reg.add(Source("busy", "crawl", "http://busy.example/"))
    queue = JobQueue(client, lock_ttl_s=5)
    assert await queue.lock("busy", "someone-else")
    calls = []

    async def run(source, progress):
        calls.append(source.name)
        return {}

    worker = Worker(queue, reg, run, worker_id="w", poll_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    job, _ = await queue.enqueue("busy")
    await asyncio.sleep(0.5)
    assert calls == [] and (await queue.get(job.id)).state == "queued"
    await queue.unlock("busy", "someone-else")
    assert (await wait_for(queue, job.id, 10)).state == "done"
    stop.set()
    await task


async def test_a_failing_job_is_reported_and_the_worker_goes_on(client):
    reg = SourceRegistry(client)
    await reg.add(Source("broken", "slack_files", "C0FILES"))
    queue = JobQueue(client)

    async def run(source, progress):
        from bot.jobs.indexing import index_source

        return await index_source(None, source, progress)

    worker = Worker(queue, reg, run, worker_id="w", poll_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    job, _ = await queue.enqueue("broken")
    done = await wait_for(queue, job.id, 10)
    stop.set()
    await task
    # A Slack source without the bot's Web API client (no bot token): a clear reason.
    assert done.state == "failed" and "without a Slack bot token" in done.error
    assert "LOREBOT_SLACK__BOT_TOKEN" in done.error
    assert (await reg.require("broken")).last_error == done.error


async def test_a_worker_killed_mid_job_leaves_nothing_visible_and_the_job_is_resumed(
        redis_url, client, tmp_path):  # noqa: F811
    data_dir = tmp_path / "data"
    env = {**os.environ, "LOREBOT_DATA_DIR": str(data_dir), "LOREBOT_REDIS__URL": redis_url,
           "LOREBOT_SOURCES__JOB_LOCK_TTL_S": "1", "LOREBOT_SOURCES__FETCH_TIMEOUT_S": "60",
           "LOREBOT_SLACK__BOT_TOKEN": "", "PYTHONPATH": ROOT}
    async with WebSite(slow_s=30.0) as site:
        reg = SourceRegistry(client)
        await reg.add(Source("site", "crawl", site.url + "/"))
        queue = JobQueue(client, lock_ttl_s=1)
        job, _ = await queue.enqueue("site")
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while "/slow.html" not in site.requests:  # the worker is mid-crawl, stuck on it
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            assert (await queue.get(job.id)).state == "running"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()

        from bot.settings import Settings
        from bot.runtime.factories import open_index

        settings = Settings(_env_file=None, data_dir=data_dir)
        index = open_index(settings)
        try:
            assert await index.documents("site") == {}  # nothing half-written is visible
        finally:
            await index.close()

        # Another worker notices the dead one (its heartbeat expired) and runs the job again.
        site.slow_s = 0
        from bot.jobs.indexing import index_source
        from bot.runtime.services import build_services

        async with build_services(settings, with_llm=False) as services:
            worker = Worker(queue, reg, lambda s, p: index_source(services, s, p),
                            worker_id="rescuer", poll_s=0.05)
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            done = await wait_for(queue, job.id, 120)
            stop.set()
            await task
            assert done.state == "done" and done.attempts == 2 and done.worker == "rescuer"
            assert done.summary["added"] == 5  # /, vpn, onboarding, slow, huge (2 MB < 5 MB)
            assert len(await services.index.documents("site")) == 5
    assert json.loads(json.dumps(done.summary))["failed"]


async def test_sources_with_a_refresh_interval_are_reindexed_on_schedule(client):
    reg = SourceRegistry(client)
    await reg.add(Source("often", "crawl", "http://often.example/", refresh_s=1))
    await reg.add(Source("never", "crawl", "http://never.example/"))
    queue = JobQueue(client)
    runs = []

    async def run(source, progress):
        runs.append(source.name)
        return {"added": 0}

    worker = Worker(queue, reg, run, worker_id="w", poll_s=0.05, schedule_every_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(3.0)
    stop.set()
    await task
    assert runs and set(runs) == {"often"}
    assert 2 <= len(runs) <= 3  # once the interval passed, then again a second later


def test_progress_names_what_each_phase_counts():
    from bot.jobs.queue import Job
    from bot.jobs.texts import job_text

    def text(phase):
        return job_text(Job(id="j1", source="s", state="running", phase=phase, done=2, total=5))

    assert "2/5 pages fetched" in text("fetching")
    assert "2/5 threads read" in text("reading")
    assert "2/5 files downloaded" in text("downloading")
    assert "2/5 documents done" in text("indexing")

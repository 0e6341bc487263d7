"""`lorebot sources list|add|remove|reindex` end to end through the CLI entry point: a real
Valkey for the registry and queue, the real model and index, a local web site."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from bot.cli.main import main
from tests.support.valkey import redis_url, valkey_server  # noqa: F401 - fixtures
from tests.support.web_site import WebSite

SUMMARY_KEYS = {"added", "updated", "unchanged", "removed", "failed", "chunks", "seconds"}


@pytest.fixture
def cli(data_dir, redis_url, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("LOREBOT_REDIS__URL", redis_url)
    monkeypatch.setenv("LOREBOT_SOURCES__FETCH_TIMEOUT_S", "1")
    monkeypatch.setenv("LOREBOT_SOURCES__MAX_PAGE_MB", "1")

    def run(*argv: str):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def site():
    """The web site on its own event loop in a thread: the CLI runs asyncio.run itself."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    def serve():
        asyncio.set_event_loop(loop)
        holder["site"] = loop.run_until_complete(WebSite(slow_s=3.0).__aenter__())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield holder["site"]
    asyncio.run_coroutine_threadsafe(holder["site"].__aexit__(None, None, None), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_sources_add_reindex_list_remove(cli, site, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# A\n\nThe cafeteria opens at noon.\n")

    code, out, _ = cli("sources", "add", site.url + "/", "--name", "web", "--json")
    assert code == 0 and json.loads(out)["type"] == "crawl"
    code, out, _ = cli("sources", "add", str(tmp_path / "notes"), "--private")
    assert code == 0 and "Added source notes (folder" in out
    code, _, err = cli("sources", "add", str(tmp_path / "notes"))
    assert code == 2 and "exists already" in err

    code, out, _ = cli("sources", "reindex", "web", "--json")
    summary = json.loads(out)
    assert code == 1 and set(summary) == SUMMARY_KEYS | {"stale"}  # 1: some pages failed
    assert "slow.html could not be fetched" in summary["stale"]  # so nothing was removed
    assert summary["added"] == 3 and summary["chunks"] > 0
    assert {"path": f"{site.url}/missing.html", "reason": "HTTP 404"} in summary["failed"]
    code, out, _ = cli("sources", "reindex", "web", "--json")
    again = json.loads(out)
    assert (again["added"], again["updated"], again["unchanged"], again["chunks"]) == (0, 0, 3, 0)
    code, out, _ = cli("sources", "reindex", "notes")
    assert code == 0 and "notes: added 1" in out

    for argv in (("sources", "--json"), ("sources", "list", "--json")):
        code, out, _ = cli(*argv)
        rows = {r["source"]: r for r in json.loads(out)}
        assert rows["web"]["documents"] == 3 and rows["web"]["public"] is True
        assert rows["notes"]["documents"] == 1 and rows["notes"]["public"] is False
        assert rows["web"]["last_summary"]["unchanged"] == 3
    code, out, _ = cli("sources")
    assert "web [crawl]: 3 documents" in out and "notes [folder, restricted]" in out

    code, out, _ = cli("sources", "remove", "web", "--json")
    assert json.loads(out) == {"source": "web", "removed_documents": 3}
    code, out, _ = cli("sources", "--json")
    assert [r["source"] for r in json.loads(out)] == ["notes"]
    code, _, err = cli("sources", "reindex", "web")
    assert code == 2 and "no source named 'web'" in err


def test_a_reindex_left_running_by_a_dead_process_does_not_block_the_next(cli, tmp_path,
                                                                          redis_url):  # noqa: F811
    import socket
    import subprocess
    import sys

    from bot.jobs.queue import JobQueue

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# Parking\n\nPark in the north garage.\n")
    assert cli("sources", "add", str(kb), "--name", "kb")[0] == 0
    # An earlier `sources reindex` killed mid-job: its job is running, its heartbeat still live.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    worker = f"{socket.gethostname()}-{dead}-abcdef"

    async def leave_a_running_job():
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis_url, decode_responses=True)
        queue = JobQueue(client, "lorebot:", lock_ttl_s=600)
        job, _ = await queue.enqueue("kb", requested_by="cli")
        await queue.heartbeat(worker)
        assert await queue.claim_id(worker, job.id) is not None
        assert await queue.lock("kb", worker)
        await client.aclose()

    asyncio.run(leave_a_running_job())
    code, out, err = cli("sources", "reindex", "kb")
    assert code == 0, err
    assert "added 1" in out

"""With Redis gone the bot still answers (in-process dedupe and memory) and says so in the log;
when Redis returns it is used again."""

from __future__ import annotations

import asyncio
import logging

from tests.handlers.conftest import CHANNEL, running_bot
from tests.support.valkey import start_valkey, url_of


async def test_redis_stopped_still_answers_once_and_logs_it(data_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bot.state.redis")
    server = start_valkey(tmp_path / "valkey-down")
    try:
        async with running_bot(data_dir, url_of(server)) as h:
            h.bot.guard.retry_after_s = 0.2
            first = await h.mention("How do I set up the VPN?")
            await h.replies(CHANNEL, first["ts"])

            server.stop()
            second = await h.mention("How do I renew the VPN profile?")  # message + app_mention
            [reply] = await h.replies(CHANNEL, second["ts"])
            assert any(b["type"] == "actions" for b in reply.blocks)
            await h.slack.settle()
            assert len(h.slack.thread(CHANNEL, second["ts"])) == 1  # deduped in process
            assert any("Redis unavailable" in r.getMessage() for r in caplog.records)
            health = h.bot.guard.available
            assert health is False

            # A follow-up in the thread answered during the outage keeps its memory in process.
            await h.sender.event(h.message("and on Windows?", thread_ts=second["ts"]))
            await h.replies(CHANNEL, second["ts"], count=2)
            assert h.retriever.queries[-1].endswith("and on Windows?")
            assert h.retriever.queries[-1] != "and on Windows?"

            server.start()
            await asyncio.sleep(0.3)  # past the guard's retry pause
            third = await h.mention("VPN again?")
            await h.replies(CHANNEL, third["ts"])
            await h.slack.wait_for(lambda: h.bot.guard.available, timeout=5)
            assert any("Redis is back" in r.getMessage() for r in caplog.records)
    finally:
        if server.is_running():
            server.stop()

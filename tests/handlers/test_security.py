"""Requests must be signed by Slack and recent; tokens never reach logs or replies."""

from __future__ import annotations

import json
import logging
import time

import aiohttp

from tests.handlers.conftest import CHANNEL
from tests.support.fake_slack import APP_TOKEN, BOT_TOKEN, BOT_USER_ID, SIGNING_SECRET, sign


async def test_bad_signature_is_rejected_with_401(harness):
    h = harness
    event = h.message(f"<@{BOT_USER_ID}> VPN?")
    body = json.dumps(h.sender.event_body(event))
    wrong_secret = await h.sender.post(body, "application/json", secret="not-the-secret")
    forged = await h.sender.post(body, "application/json", signature="v0=" + "0" * 64)
    # A valid signature of another body does not carry over.
    now = int(time.time())
    swapped = await h.sender.post(body, "application/json", timestamp=now,
                                  signature=sign(body + " ", now))
    assert wrong_secret.status == forged.status == swapped.status == 401
    await h.slack.settle()
    assert h.slack.bot_messages() == [] and h.retriever.calls == []


async def test_stale_timestamp_is_rejected_with_401(harness, caplog):
    h = harness
    body = json.dumps(h.sender.event_body(h.message(f"<@{BOT_USER_ID}> VPN?")))
    stale = int(time.time()) - 6 * 60  # Slack's replay window is five minutes
    sent = await h.sender.post(body, "application/json", timestamp=stale)  # correctly signed
    assert sent.status == 401
    future = await h.sender.post(body, "application/json", timestamp=int(time.time()) + 6 * 60)
    assert future.status == 401
    assert sum("stale Slack signature" in r.getMessage() for r in caplog.records) == 2
    await h.slack.settle()
    assert h.slack.bot_messages() == []


async def test_unsigned_request_is_rejected(harness):
    async with aiohttp.ClientSession() as session, session.post(
        harness.sender.url, json={"type": "url_verification", "challenge": "x"}
    ) as resp:
        assert resp.status == 401


async def test_url_verification_and_health_check(harness):
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "t"})
    sent = await harness.sender.post(body, "application/json")
    assert sent.status == 200 and "abc123" in sent.body
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{harness.port}/healthz"
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"ok": True, "redis": "up", "answering": 0}


async def test_tokens_never_appear_in_logs_or_replies(harness, caplog):
    h = harness
    caplog.set_level(logging.DEBUG)
    question = await h.mention("How do I set up the VPN?")
    await h.replies(CHANNEL, question["ts"])
    await h.sender.command("ask what about the secret token?")
    await h.sender.command("nonsense")
    await h.slack.settle()
    secrets = (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN)
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert len(caplog.records) > 10  # the debug logs were really captured
    for secret in secrets:
        assert secret not in logged
        assert secret not in repr(h.settings)
        for message in h.slack.bot_messages():
            assert secret not in message.text + json.dumps(message.blocks)
    # Every Web API call authenticated with the bot token (in a header, not the body).
    assert {c.token for c in h.slack.calls} == {BOT_TOKEN}
    assert not any(BOT_TOKEN in json.dumps(c.args) for c in h.slack.calls)

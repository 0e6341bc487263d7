"""Bad input at the door: whatever arrives, the answer is 400 or 401, never a 500; the signature
is checked on the raw bytes before anything is parsed; a replayed signed request is refused;
/healthz asks Redis instead of repeating what the guard last saw."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

import aiohttp

from bot.slack.server import ReplayMemory, malformed
from bot.state.redis import RedisGuard, make_client
from bot.settings import RedisSettings
from tests.handlers.conftest import CHANNEL, running_bot
from tests.support.fake_slack import API_APP_ID, BOT_USER_ID, SIGNING_SECRET, TEAM_ID, sign
from tests.support.valkey import start_valkey, url_of


async def _post_raw(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


def _signed_headers(body: bytes, content_type: str = "application/json",
                    timestamp: int | None = None) -> dict[str, str]:
    import hashlib
    import hmac

    ts = int(time.time()) if timestamp is None else timestamp
    base = b"v0:" + str(ts).encode() + b":" + body
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature}


async def test_bad_bodies_and_timestamps_get_400_or_401_never_500(harness, caplog):
    h = harness
    caplog.set_level(logging.DEBUG)
    cases = {
        # (body, headers): expected status
        "unsigned broken JSON": (b'{"type": "event_callback", "event": ', {
            "Content-Type": "application/json"}, 401),
        "unsigned non-UTF-8": (b'{"type": "\xff\xfe"}', {"Content-Type": "application/json"}, 401),
        "signed broken JSON": (b'{"type": "event_callback", "event": ', None, 400),
        "signed non-UTF-8": (b'{"type": "event_callback", "x": "\xff\xfe"}', None, 400),
        "signed JSON list": (b'[1, 2, 3]', None, 400),
        "signed JSON string": (b'"event_callback"', None, 400),
        "signed broken payload": (b"payload=%7Bnot+json", "form", 400),
        "signed non-UTF-8 form": (b"payload=%ff%fe", "form", 400),
    }
    for name, (body, headers, expected) in cases.items():
        if headers is None:
            headers = _signed_headers(body)
        elif headers == "form":
            headers = _signed_headers(body, "application/x-www-form-urlencoded")
        status, text = await _post_raw(h.sender.url, body, headers)
        assert status == expected, f"{name}: {status} {text}"
    good = json.dumps(h.sender.event_body(h.message(f"<@{BOT_USER_ID}> VPN?"))).encode()
    for timestamp in ("soon", "", "1e9", "-1", "١٢٣", "9" * 400):
        headers = {**_signed_headers(good), "X-Slack-Request-Timestamp": timestamp}
        status, _ = await _post_raw(h.sender.url, good, headers)
        assert status == 401, timestamp
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # Signed, well-formed, but not what Slack sends: never a 500 either.
    odd = [b'{"type": ["event_callback"]}', b'{"type": "event_callback", "event": "x"}',
           b'{"type": "event_callback", "event": {"type": "message", "channel": 5}}',
           b'{"type": "block_actions", "actions": "x", "user": 7}', b'{}']
    for body in odd:
        status, text = await _post_raw(h.sender.url, body, _signed_headers(body))
        assert status < 500, (body, status, text)
    for form in (b"payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A5%7D",
                 b"command=%2Florebot&text=status", b"a=b"):
        headers = _signed_headers(form, "application/x-www-form-urlencoded")
        status, text = await _post_raw(h.sender.url, form, headers)
        assert status < 500, (form, status, text)
    await h.slack.settle(0.2)
    assert h.slack.bot_messages() == [] and h.retriever.calls == []


def test_payloads_as_slack_sends_them_are_well_formed():
    # Slack sends null for "no enterprise" / "no team" (org-wide installs) and nested objects.
    assert malformed({"type": "block_actions", "enterprise": None, "team": None,
                      "user": {"id": "U1"}, "actions": [{"action_id": "a", "value": "v"}],
                      "container": {"type": "view"}, "view": {"id": "V1"}}) is None
    assert malformed({"type": "event_callback", "authorizations": [{"team_id": "T"}],
                      "event": {"type": "message", "subtype": "message_changed",
                                "channel": "C1", "message": {"text": "x"}}}) is None
    assert malformed({"command": "/lorebot", "user_id": "U1", "channel_id": "C1",
                      "text": ""}) is None
    assert malformed({"type": "url_verification", "challenge": "c"}) is None
    assert malformed({"type": "block_actions", "user": None}) is not None


async def test_the_signature_covers_the_raw_bytes(harness):
    """A body signed in one encoding and re-encoded by a proxy no longer verifies."""
    h = harness
    body = json.dumps({"type": "url_verification", "challenge": "é"}, ensure_ascii=False)
    headers = _signed_headers(body.encode("utf-8"))
    status, _ = await _post_raw(h.sender.url, body.encode("latin-1"), headers)
    assert status == 401
    status, text = await _post_raw(h.sender.url, body.encode("utf-8"), headers)
    assert status == 200 and json.loads(text)["challenge"] == "é"


def _command_body(text: str) -> str:
    return urlencode({
        "token": "legacy", "team_id": TEAM_ID, "team_domain": "test", "channel_id": CHANNEL,
        "channel_name": "general", "user_id": "U0ALICE", "user_name": "alice",
        "command": "/lorebot", "text": text, "api_app_id": API_APP_ID,
        "response_url": "http://127.0.0.1:9/none", "trigger_id": "trigger-replayed",
    })


async def test_a_replayed_command_or_click_is_refused(harness, caplog):
    h = harness
    body, now = _command_body("ask How do I set up the VPN?"), int(time.time())
    first = await h.sender.post(body, "application/x-www-form-urlencoded", timestamp=now)
    assert first.status == 200
    await h.slack.wait_for(lambda: h.slack.bot_messages(CHANNEL))
    for _ in range(3):
        again = await h.sender.post(body, "application/x-www-form-urlencoded", timestamp=now)
        assert again.status == 401
    # A fresh signature of the same command (a user asking again) is a new request.
    later = await h.sender.post(body, "application/x-www-form-urlencoded", timestamp=now - 1)
    assert later.status == 200
    await h.slack.settle()
    asked = [c for c in h.slack.calls_to("chat.postMessage") if "asked" in c.args.get("text", "")]
    assert len(asked) == 2  # one question header per request taken
    assert sum("replayed Slack request" in r.getMessage() for r in caplog.records) == 3

    payload = {"type": "block_actions", "api_app_id": API_APP_ID, "token": "legacy",
               "trigger_id": "t", "team": {"id": TEAM_ID, "domain": "test"},
               "user": {"id": "U0ALICE", "username": "u", "team_id": TEAM_ID},
               "container": {"type": "message", "message_ts": "1.1", "channel_id": CHANNEL},
               "channel": {"id": CHANNEL, "name": "general"},
               "response_url": h.slack.response_url("click"),
               "actions": [{"type": "button", "action_id": "lorebot_feedback_helpful",
                            "value": "answer-1", "block_id": "b", "action_ts": "1.2"}]}
    click = urlencode({"payload": json.dumps(payload)})
    assert (await h.sender.post(click, "application/x-www-form-urlencoded",
                                timestamp=now)).status == 200
    assert (await h.sender.post(click, "application/x-www-form-urlencoded",
                                timestamp=now)).status == 401


async def test_an_event_retry_is_not_a_replay_but_a_replayed_retry_is(harness):
    h = harness
    message = h.message(f"<@{BOT_USER_ID}> VPN?")
    body, now = json.dumps(h.sender.event_body(message, "EvREPLAY")), int(time.time())
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await h.sender.post(body, "application/json", timestamp=now)).status == 200
    assert (await h.sender.post(body, "application/json", timestamp=now,
                                headers=retry)).status == 200
    assert (await h.sender.post(body, "application/json", timestamp=now,
                                headers=retry)).status == 401
    await h.slack.settle()


async def test_replays_are_remembered_across_replicas_and_through_an_outage(tmp_path):
    server = start_valkey(tmp_path / "valkey")
    client = make_client(url_of(server), RedisSettings(timeout_s=0.5))
    try:
        one, two = ReplayMemory(RedisGuard(client)), ReplayMemory(RedisGuard(client))
        assert await one.first_time("v0=aaa")
        assert not await two.first_time("v0=aaa")  # another replica: Redis knows it
        assert 0 < await client.ttl(f"lorebot:replay:{_digest('v0=aaa')}") <= one.window_s

        server.stop()
        assert await one.first_time("v0=bbb")  # Redis down: the local memory decides
        assert not await one.first_time("v0=bbb")
        assert not await one.first_time("v0=aaa")

        small = ReplayMemory(RedisGuard(client), max_local=3)
        for n in range(10):
            assert await small.first_time(f"v0={n}")
        assert len(small._seen) == 3  # bounded
    finally:
        await client.aclose()
        if server.is_running():
            server.stop()


def _digest(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


async def test_healthz_asks_redis(data_dir, tmp_path):
    server = start_valkey(tmp_path / "valkey-health")
    try:
        async with running_bot(data_dir, url_of(server)) as h, aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{h.port}/healthz"
            async with s.get(url) as resp:
                assert (await resp.json())["redis"] == "up"
            server.stop()
            started = time.monotonic()
            async with s.get(url) as resp:
                assert resp.status == 200 and (await resp.json())["redis"] == "down"
            assert time.monotonic() - started < 2
            server.start()
            async with s.get(url) as resp:
                assert (await resp.json())["redis"] == "up"
    finally:
        if server.is_running():
            server.stop()


def test_sign_helper_matches():  # the raw-bytes helper signs as the fake sender does
    body = '{"a": 1}'
    assert _signed_headers(body.encode(), timestamp=5)["X-Slack-Signature"] == sign(body, 5)

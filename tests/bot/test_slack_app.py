"""The app factory and what surrounds it: configuration errors, the acks-first gate, the Slack
app manifest agreeing with the listeners."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from bot.settings import Settings, SlackSettings
from bot.slack.app import DEFAULT_API_URL, SlackBot, SlackConfigError, web_client
from bot.slack.server import AcksFirst
from handlers.app import build_app
from handlers.commands import COMMAND

ROOT = Path(__file__).resolve().parents[2]


class _NoRedis:
    def register_script(self, script):
        return None


def test_build_app_needs_a_bot_token(tmp_path):
    bot = SlackBot.create(Settings(_env_file=None, data_dir=tmp_path), pipeline=None,
                          redis_client=_NoRedis())
    with pytest.raises(SlackConfigError, match="LOREBOT_SLACK__BOT_TOKEN"):
        build_app(bot)


def test_web_client_uses_the_configured_api_url_and_retries_rate_limits():
    s = Settings(_env_file=None, slack=SlackSettings(bot_token=SecretStr("xoxb-1")))
    assert web_client(s).base_url == DEFAULT_API_URL
    s = Settings(_env_file=None, slack=SlackSettings(bot_token=SecretStr("xoxb-1"),
                                                     api_url="http://127.0.0.1:9/api/"))
    client = web_client(s)
    assert client.base_url == "http://127.0.0.1:9/api/" and client.token == "xoxb-1"
    assert any(type(h).__name__ == "AsyncRateLimitErrorRetryHandler" for h in client.retry_handlers)


async def test_acks_first_waits_for_a_quiet_moment_but_not_forever():
    gate = AcksFirst(quiet_s=0.05, max_wait_s=0.3)
    started = time.monotonic()
    await gate.wait()
    assert time.monotonic() - started < 0.02  # nothing arrived: go at once

    async def burst():
        for _ in range(20):
            gate.request_arrived()
            await asyncio.sleep(0.02)

    pusher = asyncio.create_task(burst())
    await asyncio.sleep(0)
    started = time.monotonic()
    await gate.wait()
    waited = time.monotonic() - started
    assert 0.25 <= waited < 0.45  # held back during the burst, up to max_wait_s
    await pusher


def test_manifest_matches_the_listeners():
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yml").read_text())
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.im", "assistant_thread_started"} <= events
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "reactions:write", "assistant:write",
            "channels:history", "im:history"} <= scopes
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [COMMAND]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert "assistant_view" in manifest["features"]
    urls = {manifest["settings"]["event_subscriptions"]["request_url"],
            manifest["settings"]["interactivity"]["request_url"],
            manifest["features"]["slash_commands"][0]["url"]}
    assert len(urls) == 1 and urls.pop().endswith("/slack/events")

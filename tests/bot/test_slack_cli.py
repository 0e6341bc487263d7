"""`lorebot serve / socket / run`: mode selection, clear errors, and the real thing in a
subprocess (real MiniLM model, the sample docs indexed, embedded Valkey, fake Slack)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.cli.main import main
from bot.cli.slack import slack_mode
from bot.settings import Settings, SlackSettings
from tests.support.fake_slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    FakeSlack,
    SignedSender,
)

ROOT = Path(__file__).resolve().parents[2]


def _settings(**slack) -> Settings:
    values = {k: SecretStr(v) for k, v in slack.items()}
    return Settings(_env_file=None, slack=SlackSettings(**values))


def test_run_picks_socket_http_or_the_demo():
    assert slack_mode(_settings()) is None
    assert slack_mode(_settings(signing_secret="s")) is None  # no bot token
    assert slack_mode(_settings(bot_token="xoxb-1")) is None  # neither transport configured
    assert slack_mode(_settings(bot_token="xoxb-1", signing_secret="s")) == "http"
    assert slack_mode(_settings(bot_token="xoxb-1", app_token="xapp-1")) == "socket"
    assert slack_mode(_settings(bot_token="xoxb-1", app_token="xapp-1", signing_secret="s")) \
        == "socket"


def test_serve_and_socket_name_the_missing_settings(data_dir, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith("LOREBOT_SLACK__"):
            monkeypatch.delenv(name)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "LOREBOT_SLACK__BOT_TOKEN and LOREBOT_SLACK__SIGNING_SECRET must be set" in err
    monkeypatch.setenv("LOREBOT_SLACK__BOT_TOKEN", "xoxb-1")
    assert main(["socket"]) == 2
    assert "LOREBOT_SLACK__APP_TOKEN must be set for socket mode" in capsys.readouterr().err


def test_makefile_run_calls_lorebot_run():
    assert re.search(r"^run:.*\n\t\$\(BIN\)/lorebot run$", (ROOT / "Makefile").read_text(), re.M)


def _env(data: Path, slack: FakeSlack, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOREBOT_", "OPENAI_")) and k != "REDIS_URL"}
    env.update({"LOREBOT_DATA_DIR": str(data), "LOREBOT_SLACK__BOT_TOKEN": BOT_TOKEN,
                "LOREBOT_SLACK__API_URL": slack.api_url, "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": str(ROOT), **extra})
    return env


QUESTION = {"type": "app_mention", "channel": "C0GENERAL", "user": "U0ALICE",
            "ts": "1600000000.000001",
            "text": f"<@{BOT_USER_ID}> How do I add my own documents to lorebot?"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_lorebot_run_serves_slack_end_to_end(tmp_path, mode):
    data = tmp_path / "data"
    async with FakeSlack() as slack:
        secret = ({"LOREBOT_SLACK__SIGNING_SECRET": SIGNING_SECRET} if mode == "http"
                  else {"LOREBOT_SLACK__APP_TOKEN": APP_TOKEN})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", "--host", "127.0.0.1", "--port", "0",
            cwd=tmp_path, env=_env(data, slack, **secret),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output: list[str] = []
        try:
            ready = await asyncio.wait_for(_ready(proc, output), 240)
            drain = asyncio.create_task(_drain(proc, output))
            if mode == "http":
                async with SignedSender(f"http://127.0.0.1:{ready}/slack/events") as sender:
                    assert (await sender.event(QUESTION)).status == 200
            else:
                await slack.wait_for(lambda: slack.socket_clients)
                await slack.push_event(SignedSender("unused").event_body(QUESTION))
            [reply] = await slack.wait_for(
                lambda: [m for m in slack.thread("C0GENERAL", QUESTION["ts"])
                         if any(b["type"] == "actions" for b in m.blocks)], timeout=60)
            sources = " ".join(b["elements"][0]["text"] for b in reply.blocks
                               if b["type"] == "context")
            assert "[1]" in sources
            assert (data / "valkey" / "appendonlydir").is_dir()  # the embedded Valkey ran here
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
            await drain
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = "".join(output)
    assert f"running the Slack bot ({mode} mode)" in text
    assert "indexing the sample docs" in text
    for secret_value in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN):
        assert secret_value not in text


async def _ready(proc, output: list[str]) -> int | None:
    """Read the bot's output until it serves: the HTTP port, or None for Socket Mode."""
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise AssertionError("lorebot exited before serving:\n" + "".join(output))
        output.append(line)
        if match := re.search(r"listening on http://[\d.]+:(\d+)/slack/events", line):
            return int(match.group(1))
        if "connected to Slack in Socket Mode" in line:
            return None


async def _drain(proc, output: list[str]) -> None:
    while line := await proc.stdout.readline():
        output.append(line.decode())

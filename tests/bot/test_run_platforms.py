"""`lorebot run` starts every platform that has credentials, and one SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal

from pydantic import SecretStr

from bot.cli.common import until_stopped
from bot.cli.slack import lark_mode
from bot.settings import LarkSettings, Settings


def _settings(**lark) -> Settings:
    return Settings(_env_file=None, lark=LarkSettings(**lark))


def test_feishu_runs_over_http_with_an_encrypt_key_else_over_the_long_connection(data_dir):
    assert lark_mode(_settings()) is None
    assert lark_mode(_settings(app_id="cli_x")) is None  # the secret is missing
    creds = {"app_id": "cli_x", "app_secret": SecretStr("s")}
    assert lark_mode(_settings(**creds)) == "connect"
    assert lark_mode(_settings(**creds, encrypt_key=SecretStr("k"))) == "http"


async def test_one_sigterm_stops_every_platform_waiting_in_the_process():
    first = asyncio.create_task(until_stopped())
    second = asyncio.create_task(until_stopped())
    await asyncio.sleep(0.05)  # both are waiting
    os.kill(os.getpid(), signal.SIGTERM)
    done, pending = await asyncio.wait({first, second}, timeout=5)
    for task in pending:
        task.cancel()
    assert pending == set(), "a platform kept running after SIGTERM"

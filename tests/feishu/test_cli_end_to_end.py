"""`lorebot lark serve` for real, in a subprocess: the sample docs indexed with the real MiniLM
model, a real Valkey, the fake Feishu Open API, encrypted and signed callbacks; nothing secret
in its output, even verbose."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.support.fake_feishu import (
    APP_ID,
    APP_SECRET,
    ENCRYPT_KEY,
    TENANT_TOKEN,
    VERIFICATION_TOKEN,
    CallbackSender,
    FakeFeishu,
    message_event,
)

ROOT = Path(__file__).resolve().parents[2]


def _env(data: Path, redis: str, feishu: FakeFeishu) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOREBOT_", "OPENAI_")) and k != "REDIS_URL"}
    env.update({"LOREBOT_DATA_DIR": str(data), "LOREBOT_REDIS__URL": redis,
                "LOREBOT_LARK__APP_ID": APP_ID, "LOREBOT_LARK__APP_SECRET": APP_SECRET,
                "LOREBOT_LARK__VERIFICATION_TOKEN": VERIFICATION_TOKEN,
                "LOREBOT_LARK__ENCRYPT_KEY": ENCRYPT_KEY, "LOREBOT_LARK__DOMAIN": feishu.base_url,
                "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    return env


@pytest.mark.slow
async def test_lorebot_lark_serve_answers_a_group_mention_from_the_real_index(tmp_path,
                                                                              redis_url):
    data = tmp_path / "data"
    async with FakeFeishu() as feishu:
        env = _env(data, redis_url, feishu)
        index = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "index", str(ROOT / "docs"), "--source", "sample",
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(index.communicate(), 300)
        assert index.returncode == 0, out.decode()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "-v", "lark", "serve", "--host", "127.0.0.1",
            "--port", "0", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        output: list[str] = []
        try:
            port = await asyncio.wait_for(_ready(proc, output), 240)
            drain = asyncio.create_task(_drain(proc, output))
            async with CallbackSender(f"http://127.0.0.1:{port}/lark/events") as sender:
                payload = sender.envelope("im.message.receive_v1", message_event(
                    "How do I add my own documents to lorebot?", chat_id="oc_group",
                    sender="ou_alice", message_id="om_e2e"))
                assert (await sender.post(payload)).status == 200
                assert (await sender.post(payload)).status == 200  # Feishu's retry
                forged = await sender.post(payload, signature="0" * 64)
                assert forged.status == 401
            [reply] = await feishu.finished_replies("om_e2e", timeout=120)
            assert "**Sources**" in reply.text and "Adding your own documents" in reply.text
            assert reply.buttons and reply.reply_in_thread
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
            await drain
            assert len(feishu.replies_to("om_e2e")) == 1
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = "".join(output)
    for secret in (APP_SECRET, ENCRYPT_KEY, VERIFICATION_TOKEN, TENANT_TOKEN):
        assert secret not in text


async def _ready(proc, output: list[str]) -> int:
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise AssertionError("lorebot exited before serving:\n" + "".join(output))
        output.append(line)
        if match := re.search(r"listening for Feishu/Lark on http://[\d.]+:(\d+)/lark/events",
                              line):
            return int(match.group(1))


async def _drain(proc, output: list[str]) -> None:
    while line := await proc.stdout.readline():
        output.append(line.decode())

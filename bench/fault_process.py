"""The fault suite's processes: the knowledge base indexed once by the real CLI (the template
every scenario copies), the bot's environment, and `lorebot serve` started, signalled, killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY_KEY = "lorebot:sources"
_LISTENING = re.compile(r"listening on http://[^:/]+:(\d+)/slack/events")


@dataclass
class Template:
    """The knowledge base indexed once (the data dir to copy) and the registry it left in Redis."""

    data_dir: Path
    registry: dict[str, str]


def build_template(root: Path) -> Template:
    """Index the two sources with the real CLI (see ``bench.fault_setup``); a template already
    built in ``root`` (``--keep`` of an earlier run) is reused."""
    from tests.support.valkey import start_valkey, url_of

    saved = root / "registry.json"
    if saved.exists() and (root / "data").is_dir():
        return Template(root / "data", json.loads(saved.read_text()))
    shutil.rmtree(root, ignore_errors=True)

    valkey = start_valkey(root / "valkey")
    try:
        env = bot_env({"LOREBOT_DATA_DIR": str(root / "data"),
                       "LOREBOT_REDIS__URL": url_of(valkey)})
        done = subprocess.run([sys.executable, "-m", "bench.fault_setup", str(root / "kb")],
                              check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"setting up the knowledge base failed:\n{done.stderr[-3000:]}")
        registry = redis_client(valkey).hgetall(REGISTRY_KEY)
    finally:
        valkey.stop()
    (root / "data" / "policy-snapshot.json").unlink(missing_ok=True)
    saved.write_text(json.dumps(registry))
    return Template(root / "data", registry)


def redis_client(valkey):
    import redis

    from tests.support.valkey import url_of

    return redis.Redis.from_url(url_of(valkey), decode_responses=True)


def bot_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment without the developer's lorebot or OpenAI settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOREBOT_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class BotProcess:
    """One `lorebot serve` process; its stderr goes to ``log``."""

    def __init__(self, env: dict[str, str], log: Path, cwd: Path) -> None:
        self.env, self.log, self.cwd = env, log, cwd
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    async def start(self, timeout: float = 300.0) -> int:
        # The bot's own folder as cwd: a stray .env in the checkout must not configure it.
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("lorebot")), "serve", "--host", "127.0.0.1",
                 "--port", "0"], env=self.env, cwd=self.cwd, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := _LISTENING.search(self.log.read_text(errors="replace")):
                self.port = int(found.group(1))
                return self.port
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.kill()
        raise RuntimeError(f"lorebot serve did not start:\n{tail}")

    def sigterm(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float = 90.0) -> int | None:
        deadline = time.monotonic() + timeout
        while self.proc is not None and self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                return None
            await asyncio.sleep(0.1)
        return self.proc.returncode if self.proc is not None else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

"""The Slack bot end to end: signed HTTP requests into the running app (aiohttp, port 0), a fake
Slack Web API, the fake OpenAI server, and a real Valkey. Retrieval is a FakeRetriever over fixed
hits unless a test brings a real index."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.answer.pipeline import AnswerPipeline
from bot.answer.llm import build_llm
from bot.state.redis import make_client
from bot.settings import LLMSettings, RedisSettings, Settings, SlackSettings
from bot.slack.server import EVENTS_PATH, SlackHttpServer
from bot.slack.app import SlackBot
from handlers.app import build_app
from search.models import Hit
from tests.bot.conftest import FakeRetriever, make_hit
from tests.support.fake_openai import FakeOpenAI, fake_openai  # noqa: F401 - a fixture
from tests.support.fake_slack import (
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    SignedSender,
)
from tests.support.valkey import redis_url, valkey_server  # noqa: F401 - fixtures

CHANNEL = "C0GENERAL"
ALICE = "U0ALICE"

HITS = (
    make_hit(1, "To set up the VPN, install WireGuard and import the profile from the IT portal.",
             title="VPN setup"),
    make_hit(2, "The VPN profile expires after 90 days; request a new one at the helpdesk.",
             title="VPN profiles"),
)
HITS = tuple(replace(h, url=f"https://wiki.example.com/{h.doc_id}") for h in HITS)


@dataclass
class Harness:
    """A running bot and everything around it."""

    slack: FakeSlack
    sender: SignedSender
    bot: SlackBot
    settings: Settings
    retriever: FakeRetriever
    port: int
    _ts = itertools.count(1)

    def next_ts(self) -> str:
        return f"1600000000.{next(self._ts):06d}"

    def message(self, text: str, *, channel: str = CHANNEL, user: str = ALICE,
                ts: str | None = None, thread_ts: str | None = None,
                channel_type: str = "channel", **extra: Any) -> dict[str, Any]:
        event = {"type": "message", "channel": channel, "user": user, "text": text,
                 "ts": ts or self.next_ts(), "channel_type": channel_type, "team": TEAM_ID,
                 **extra}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def app_mention(self, message: dict[str, Any]) -> dict[str, Any]:
        """The ``app_mention`` Slack sends alongside a ``message`` that mentions the bot."""
        event = {k: v for k, v in message.items() if k != "channel_type"}
        return {**event, "type": "app_mention"}

    async def mention(self, question: str, **kw: Any) -> dict[str, Any]:
        """Send a mention as Slack does (``message`` and ``app_mention``); returns the message."""
        message = self.message(f"<@{BOT_USER_ID}> {question}", **kw)
        first = await self.sender.event(message)
        second = await self.sender.event(self.app_mention(message))
        assert first.status == second.status == 200
        return message

    async def replies(self, channel: str, thread_ts: str, count: int = 1, *,
                      finished: bool = True, timeout: float = 15.0):
        """Wait for ``count`` bot replies in the thread, finished (buttons shown) by default."""
        def ready():
            msgs = self.slack.thread(channel, thread_ts)
            if len(msgs) < count:
                return None
            if finished and not all(_finished(m) for m in msgs[:count]):
                return None
            return msgs

        return await self.slack.wait_for(ready, timeout)


class ScriptedAnswerer:
    """The pipeline protocol, scripted: yields ``deltas`` with a pause before each, then the
    final Answer (or raises ``error``). Records the questions and histories it was given."""

    def __init__(self, deltas: Sequence[str], answer, *, pause_s: float = 0.1,
                 error: Exception | None = None) -> None:
        self.deltas = list(deltas)
        self.answer = answer
        self.pause_s = pause_s
        self.error = error
        self.calls: list[tuple[str, list]] = []

    async def stream(self, question, history=()):
        self.calls.append((question, list(history)))
        for delta in self.deltas:
            await asyncio.sleep(self.pause_s)
            yield delta
        if self.error is not None:
            raise self.error
        yield self.answer


def _finished(message) -> bool:
    return any(b.get("type") == "actions" for b in message.blocks) or (
        not message.streaming and "went wrong" in message.text
    )


def make_settings(data_dir: Path, api_url: str, redis: str, *, llm_url: str | None = None,
                  **slack: Any) -> Settings:
    llm = LLMSettings(model="fake-model", base_url=llm_url, api_key=SecretStr("sk-test-key"),
                      max_retries=0, timeout_s=10) if llm_url else LLMSettings()
    return Settings(
        _env_file=None, data_dir=data_dir, llm=llm,
        slack=SlackSettings(bot_token=SecretStr(BOT_TOKEN), signing_secret=SecretStr(SIGNING_SECRET),
                            api_url=api_url, **{"update_interval_s": 0.2, **slack}),
        redis=RedisSettings(url=SecretStr(redis), timeout_s=0.5),
    )


@asynccontextmanager
async def bot_app(fake: FakeSlack, data_dir: Path, redis: str, *, hits: Sequence[Hit] = HITS,
                  llm_url: str | None = None, pipeline=None, **slack: Any):
    """The bot and its bolt app, talking to ``fake``; yields (settings, retriever, bot, app)."""
    settings = make_settings(data_dir, fake.api_url, redis, llm_url=llm_url, **slack)
    retriever = FakeRetriever(hits)
    llm = build_llm(settings.llm, environ={}) if llm_url else None
    pipeline = pipeline or AnswerPipeline(retriever, llm, settings)
    client = make_client(redis, settings.redis)
    bot = SlackBot.create(settings, pipeline, client)
    try:
        yield settings, retriever, bot, build_app(bot)
    finally:
        await bot.aclose()
        await client.aclose()
        if llm is not None:
            await llm.aclose()


@asynccontextmanager
async def running_bot(data_dir: Path, redis: str, **kw: Any) -> AsyncIterator[Harness]:
    """Start the fake Slack and the bot's HTTP server; yield a :class:`Harness`."""
    async with FakeSlack() as fake, bot_app(fake, data_dir, redis, **kw) as (
            settings, retriever, bot, app):
        server = SlackHttpServer(app, bot)
        port = await server.start("127.0.0.1", 0)
        try:
            async with SignedSender(f"http://127.0.0.1:{port}{EVENTS_PATH}") as sender:
                yield Harness(fake, sender, bot, settings, retriever, port)
        finally:
            await server.stop(drain_s=10)


@pytest.fixture
async def harness(data_dir, redis_url) -> AsyncIterator[Harness]:  # noqa: F811
    """The bot with extractive answers (no LLM)."""
    async with running_bot(data_dir, redis_url) as h:
        yield h


@pytest.fixture
async def llm_harness(data_dir, redis_url, fake_openai) -> AsyncIterator[Harness]:  # noqa: F811
    """The bot answering with the fake OpenAI server."""
    async with running_bot(data_dir, redis_url, llm_url=fake_openai.base_url) as h:
        h.openai = fake_openai
        yield h

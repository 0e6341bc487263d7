"""The Feishu/Lark bot end to end: encrypted, signed callbacks into its HTTP server (port 0), a
fake Open API (tests/support/fake_feishu.py), a real Valkey, and the real answer pipeline over a
retriever of fixed hits (filtered by source, as the index is), with or without the fake OpenAI
server."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.answer.llm import build_llm
from bot.answer.pipeline import AnswerPipeline
from bot.settings import LarkSettings, LLMSettings, RedisSettings, Settings
from bot.state.redis import make_client
from feishu.bot import LarkBot
from feishu.gate import Gate
from feishu.server import EVENTS_PATH, LarkHttpServer
from search.models import Hit
from tests.bot.conftest import FakeRetriever, make_hit
from tests.support.fake_feishu import (
    APP_ID,
    APP_SECRET,
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    CallbackSender,
    FakeFeishu,
    message_event,
)
from tests.support.fake_openai import FakeOpenAI, fake_openai  # noqa: F401 - a fixture
from tests.support.valkey import redis_url, valkey_server  # noqa: F401 - fixtures

GROUP = "oc_group_general"
ALICE = "ou_alice"
ADMIN = "ou_admin"

HITS = tuple(replace(h, url=f"https://wiki.example.com/{h.doc_id}", source="handbook") for h in (
    make_hit(1, "To set up the VPN, install WireGuard and import the profile from the IT portal.",
             title="VPN setup"),
    make_hit(2, "The VPN profile expires after 90 days; request a new one at the helpdesk.",
             title="VPN profiles"),
))


class SourceFilteringRetriever(FakeRetriever):
    """Fixed hits, filtered by source as the real index filters them."""

    async def search(self, query: str, *, mode: str | None = None, k: int = 10,
                     sources: Sequence[str] | None = None) -> list[Hit]:
        self.calls.append({"query": query, "mode": mode, "k": k, "sources": sources})
        return [h for h in self.hits if sources is None or h.source in sources][:k]


@dataclass
class Harness:
    feishu: FakeFeishu
    sender: CallbackSender
    bot: LarkBot
    settings: Settings
    retriever: SourceFilteringRetriever
    url: str
    _ids = itertools.count(1)

    def next_message_id(self) -> str:
        return f"om_question_{next(self._ids)}"

    async def ask(self, text: str, *, chat_id: str = GROUP, sender: str = ALICE,
                  event_id: str | None = None, message_id: str | None = None, **kw: Any):
        """Send a message event; returns (message_id, payload, response)."""
        message_id = message_id or self.next_message_id()
        payload = self.sender.envelope("im.message.receive_v1", message_event(
            text, chat_id=chat_id, sender=sender, message_id=message_id, **kw), event_id)
        response = await self.sender.post(payload)
        assert response.status == 200
        return message_id, payload, response


def make_settings(data_dir: Path, base_url: str, redis: str, *, llm_url: str | None = None,
                  **lark: Any) -> Settings:
    llm = LLMSettings(model="fake-model", base_url=llm_url, api_key=SecretStr("sk-test-key"),
                      max_retries=0, timeout_s=5, first_token_s=5) if llm_url else LLMSettings()
    return Settings(
        _env_file=None, data_dir=data_dir, llm=llm,
        lark=LarkSettings(app_id=APP_ID, app_secret=SecretStr(APP_SECRET),
                          verification_token=SecretStr(VERIFICATION_TOKEN),
                          encrypt_key=SecretStr(ENCRYPT_KEY), domain=base_url,
                          admin_open_ids=ADMIN, **lark),
        redis=RedisSettings(url=SecretStr(redis), timeout_s=0.5),
    )


@asynccontextmanager
async def running_bot(data_dir: Path, redis: str, *, hits: Sequence[Hit] = HITS,
                      llm_url: str | None = None, pipeline=None, **lark: Any
                      ) -> AsyncIterator[Harness]:
    async with FakeFeishu() as fake:
        settings = make_settings(data_dir, fake.base_url, redis, llm_url=llm_url, **lark)
        retriever = SourceFilteringRetriever(hits)
        llm = build_llm(settings.llm, environ={}) if llm_url else None
        client = make_client(redis, settings.redis)
        bot = LarkBot.create(settings, pipeline or AnswerPipeline(retriever, llm, settings), client)
        await bot.start()
        server = LarkHttpServer(bot, Gate(settings.lark))
        port = await server.start("127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}{EVENTS_PATH}"
        try:
            async with CallbackSender(url) as sender:
                yield Harness(fake, sender, bot, settings, retriever, url)
        finally:
            await server.stop(drain_s=10)
            await client.aclose()
            if llm is not None:
                await llm.aclose()


@pytest.fixture
async def harness(data_dir, redis_url) -> AsyncIterator[Harness]:  # noqa: F811
    """The bot with extractive answers (no LLM)."""
    async with running_bot(data_dir, redis_url) as h:
        yield h


@pytest.fixture
def dead_llm_url() -> str:
    """An OpenAI base URL on a local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"

"""Fixtures for the answer pipeline: a fake retriever over fixed hits, a fake OpenAI server and
an LLM client pointed at it (with a recording, non-waiting sleep)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from bot.answer.llm import LLMClient, build_llm
from bot.settings import AnswerSettings, LLMSettings, SearchSettings
from search.models import Hit
from tests.support.fake_openai import FakeOpenAI, fake_openai  # noqa: F401 - a fixture

TEST_KEY = "sk-test-secret-0123456789"


def make_hit(
    n: int, text: str, *, similarity: float | None = 0.8, score: float | None = None,
    title: str | None = None,
) -> Hit:
    """A hit for document ``n``; score defaults to a rank-like value."""
    return Hit(
        chunk_id=f"doc{n}#0", doc_id=f"doc{n}", source="kb", title=title or f"Doc {n}",
        text=text, score=score if score is not None else 1.0 / n, path=f"kb/doc{n}.md",
        url=None, similarity=similarity,
    )


class FakeRetriever:
    """The retriever protocol over a fixed list of hits; records every call."""

    def __init__(
        self, hits: Sequence[Hit] = (), *, has_reranker: bool = False,
        default_mode: str | None = None,
    ) -> None:
        self.hits = list(hits)
        self._has_reranker = has_reranker
        self.default_mode = default_mode
        self.calls: list[dict[str, Any]] = []

    @property
    def has_reranker(self) -> bool:
        return self._has_reranker

    @property
    def queries(self) -> list[str]:
        return [c["query"] for c in self.calls]

    async def search(
        self, query: str, *, mode: str | None = None, k: int = 10,
        sources: Sequence[str] | None = None,
    ) -> list[Hit]:
        self.calls.append({"query": query, "mode": mode, "k": k, "sources": sources})
        return self.hits[:k]


@dataclass
class PipelineConfig:
    """The three settings groups the pipeline reads, without BaseSettings' environment reading."""

    answer: AnswerSettings = field(default_factory=AnswerSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    search: SearchSettings = field(default_factory=SearchSettings)


@pytest.fixture
def sleeps() -> list[float]:
    """Delays the LLM client asked to sleep (it does not actually wait)."""
    return []


def llm_settings(base_url: str, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "model": "fake-model", "base_url": base_url, "api_key": SecretStr(TEST_KEY),
        "max_retries": 2, "timeout_s": 5.0,
    }
    values.update(overrides)
    return LLMSettings(**values)


def make_llm(settings: LLMSettings, sleeps: list[float]) -> LLMClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = build_llm(settings, environ={}, sleep=sleep)
    assert client is not None
    return client


@pytest.fixture
async def llm(fake_openai: FakeOpenAI, sleeps: list[float]) -> AsyncIterator[LLMClient]:  # noqa: F811
    client = make_llm(llm_settings(fake_openai.base_url), sleeps)
    yield client
    await client.aclose()


@pytest.fixture
def dead_base_url() -> str:
    """A base URL on a local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"

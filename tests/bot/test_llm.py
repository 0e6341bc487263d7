"""The LLM client against a fake OpenAI-compatible server, driven by the real openai package."""

from __future__ import annotations

import logging

import openai
import pytest
from pydantic import SecretStr

from bot.answer.llm import (
    LLMClient,
    LLMConfigError,
    LLMRequestError,
    LLMStreamError,
    LLMUnavailableError,
    build_llm,
)
from bot.settings import LLMSettings
from tests.bot.conftest import TEST_KEY, llm_settings, make_llm
from tests.support.fake_openai import FakeOpenAI, Reply

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


async def test_complete_returns_text_and_sends_settings(llm: LLMClient, fake_openai: FakeOpenAI):
    fake_openai.enqueue("Hi there.")
    assert await llm.complete(MESSAGES) == "Hi there."
    (request,) = fake_openai.requests
    assert request.body["model"] == "fake-model"
    assert request.body["messages"] == MESSAGES
    assert request.body["temperature"] == pytest.approx(0.1)
    # Not api.openai.com: the widely supported parameter name is used.
    assert request.body["max_tokens"] == 700
    assert request.headers["Authorization"] == f"Bearer {TEST_KEY}"


async def test_429_with_retry_after_is_retried_after_the_requested_wait(
    llm: LLMClient, fake_openai: FakeOpenAI, sleeps: list[float], caplog
):
    fake_openai.enqueue(Reply.error(429, retry_after=2), "ok")
    with caplog.at_level(logging.WARNING, logger="bot.answer.llm"):
        assert await llm.complete(MESSAGES) == "ok"
    assert fake_openai.request_count == 2
    assert sleeps == [2.0]
    assert "retry 1/2" in caplog.text and "429" in caplog.text
    assert TEST_KEY not in caplog.text


async def test_retry_after_ms_wins_and_is_capped(
    fake_openai: FakeOpenAI, sleeps: list[float]
):
    llm = make_llm(llm_settings(fake_openai.base_url), sleeps)
    llm.retry_after_max_s = 1.0
    fake_openai.enqueue(
        Reply(status=429, headers={"retry-after-ms": "250"}),
        Reply.error(503, retry_after=3600),
        "ok",
    )
    assert await llm.complete(MESSAGES) == "ok"
    assert sleeps == [0.25, 1.0]
    await llm.aclose()


async def test_5xx_backoff_is_exponential_with_jitter(
    llm: LLMClient, fake_openai: FakeOpenAI, sleeps: list[float]
):
    fake_openai.enqueue(Reply.error(500), Reply.error(502), "ok")
    assert await llm.complete(MESSAGES) == "ok"
    assert fake_openai.request_count == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


async def test_retries_exhausted_raise_unavailable_without_the_key(
    llm: LLMClient, fake_openai: FakeOpenAI
):
    fake_openai.enqueue(*[Reply.error(503, error_message=f"overloaded, key {TEST_KEY}")] * 3)
    with pytest.raises(LLMUnavailableError) as info:
        await llm.complete(MESSAGES)
    assert fake_openai.request_count == 3  # the first attempt and max_retries=2 retries
    assert "3 attempts" in str(info.value)
    assert TEST_KEY not in str(info.value)
    assert isinstance(info.value.__cause__, openai.InternalServerError)


async def test_client_errors_are_not_retried(llm: LLMClient, fake_openai: FakeOpenAI):
    fake_openai.enqueue(Reply.error(401, error_message=f"Incorrect API key provided: {TEST_KEY}"))
    with pytest.raises(LLMRequestError) as info:
        await llm.complete(MESSAGES)
    assert fake_openai.request_count == 1
    assert "401" in str(info.value) and TEST_KEY not in str(info.value)


async def test_timeouts_and_dropped_connections_are_retried(
    fake_openai: FakeOpenAI, sleeps: list[float]
):
    llm = make_llm(llm_settings(fake_openai.base_url, timeout_s=0.2), sleeps)
    fake_openai.enqueue(Reply(delay_s=1.0), Reply(drop=True), "finally")
    assert await llm.complete(MESSAGES) == "finally"
    assert fake_openai.request_count == 3
    await llm.aclose()


async def test_dead_server_raises_unavailable(dead_base_url: str, sleeps: list[float]):
    llm = make_llm(llm_settings(dead_base_url, max_retries=1), sleeps)
    with pytest.raises(LLMUnavailableError):
        await llm.complete(MESSAGES)
    assert len(sleeps) == 1
    await llm.aclose()


async def test_stream_yields_deltas(llm: LLMClient, fake_openai: FakeOpenAI):
    fake_openai.enqueue("one two three four")
    deltas = [d async for d in llm.stream(MESSAGES)]
    assert len(deltas) == 4
    assert "".join(deltas) == "one two three four"
    assert fake_openai.requests[0].stream


async def test_stream_failing_before_first_delta_is_retried(
    llm: LLMClient, fake_openai: FakeOpenAI, sleeps: list[float]
):
    fake_openai.enqueue(Reply.error(429, retry_after=0), Reply(drop_after_chunks=0), "all good")
    deltas = [d async for d in llm.stream(MESSAGES)]
    assert "".join(deltas) == "all good"
    assert fake_openai.request_count == 3


async def test_stream_failing_after_deltas_raises(llm: LLMClient, fake_openai: FakeOpenAI):
    fake_openai.enqueue(Reply(text="alpha beta gamma delta", drop_after_chunks=2))
    received: list[str] = []
    with pytest.raises(LLMStreamError):
        async for delta in llm.stream(MESSAGES):
            received.append(delta)
    assert "".join(received) == "alpha beta "
    assert fake_openai.request_count == 1  # text was shown: no silent replay


def test_build_llm_is_none_without_a_model():
    assert build_llm(LLMSettings(), environ={"OPENAI_API_KEY": "k"}) is None


async def test_build_llm_falls_back_to_openai_environment(fake_openai: FakeOpenAI):
    llm = build_llm(
        LLMSettings(model="m"),
        environ={"OPENAI_API_KEY": "env-key", "OPENAI_BASE_URL": fake_openai.base_url},
    )
    assert llm is not None
    fake_openai.enqueue("from env")
    assert await llm.complete(MESSAGES) == "from env"
    assert fake_openai.requests[0].headers["Authorization"] == "Bearer env-key"
    await llm.aclose()


async def test_settings_win_over_environment(fake_openai: FakeOpenAI, sleeps: list[float]):
    llm = build_llm(
        llm_settings(fake_openai.base_url),
        environ={"OPENAI_API_KEY": "env-key", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
    )
    assert llm is not None
    fake_openai.enqueue("ok")
    assert await llm.complete(MESSAGES) == "ok"
    assert fake_openai.requests[0].headers["Authorization"] == f"Bearer {TEST_KEY}"
    await llm.aclose()


def test_build_llm_without_key_or_base_url_explains_what_to_set():
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        build_llm(LLMSettings(model="gpt-x"), environ={})


async def test_build_llm_picks_parameter_name_and_client_class():
    official = build_llm(LLMSettings(model="gpt-x", api_key=SecretStr("k")), environ={})
    assert official is not None and official.max_tokens_param == "max_completion_tokens"
    azure = build_llm(
        LLMSettings(model="deploy", api_key=SecretStr("k"), azure_api_version="2024-10-21",
                    base_url="https://example.openai.azure.com"),
        environ={},
    )
    assert azure is not None
    assert isinstance(azure._client, openai.AsyncAzureOpenAI)  # noqa: SLF001
    assert azure._client.max_retries == 0  # noqa: SLF001 - our retries, not the package's
    await official.aclose()
    await azure.aclose()

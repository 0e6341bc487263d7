"""A model that hangs, stops half-way or sends broken JSON never leaves the asker waiting or
shows a broken answer: the extractive answer follows, with a notice, within the deadlines."""

from __future__ import annotations

import time

from bot.answer.llm import LLMClient
from bot.answer.pipeline import (
    LLM_CUT_NOTICE,
    LLM_SLOW_NOTICE,
    LLM_UNAVAILABLE_NOTICE,
    Answer,
    AnswerPipeline,
)
from bot.settings import AnswerSettings, SearchSettings
from tests.bot.conftest import FakeRetriever, PipelineConfig, llm_settings, make_hit, make_llm
from tests.support.fake_openai import FakeOpenAI, Reply

HITS = [make_hit(1, "Rollbacks are manual. Run `deploy rollback` with the release id.")]


def _pipeline(fake: FakeOpenAI, sleeps, **llm) -> tuple[AnswerPipeline, LLMClient]:
    settings = llm_settings(fake.base_url, max_retries=0, **llm)
    client = make_llm(settings, sleeps)
    config = PipelineConfig(AnswerSettings(), settings, SearchSettings())
    return AnswerPipeline(FakeRetriever(HITS), client, config), client


async def _stream(pipeline: AnswerPipeline) -> list:
    return [p async for p in pipeline.stream("How do rollbacks work?")]


async def test_a_hung_model_gives_the_extractive_answer_at_the_first_token_deadline(
        fake_openai: FakeOpenAI, sleeps):
    fake_openai.enqueue(Reply(text="Rollbacks are manual [1].", delay_s=6))
    pipeline, client = _pipeline(fake_openai, sleeps, first_token_s=0.5, timeout_s=60)
    started = time.monotonic()
    try:
        parts = await _stream(pipeline)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 5
    final = parts[-1]
    assert isinstance(final, Answer)
    assert (final.mode, final.notice) == ("extractive", LLM_SLOW_NOTICE)


async def test_a_model_that_keeps_talking_is_cut_at_the_answer_deadline(fake_openai, sleeps):
    fake_openai.enqueue(Reply(text=" ".join(["word"] * 60) + " [1].", chunk_delay_s=0.1))
    pipeline, client = _pipeline(fake_openai, sleeps, first_token_s=5, answer_deadline_s=1.0)
    started = time.monotonic()
    try:
        parts = await _stream(pipeline)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 4
    final = parts[-1]
    assert (final.mode, final.notice) == ("extractive", LLM_SLOW_NOTICE)
    assert parts[-2].startswith("\n\n")  # after what was shown: the reply replaces it whole


async def test_a_stream_without_a_finish_reason_is_not_shown_as_complete(fake_openai, sleeps):
    fake_openai.enqueue(Reply(text="Rollbacks are manual [1] and", end="cut"))
    pipeline, client = _pipeline(fake_openai, sleeps)
    try:
        final = (await _stream(pipeline))[-1]
    finally:
        await client.aclose()
    assert (final.mode, final.notice) == ("extractive", LLM_CUT_NOTICE)


async def test_broken_json_in_the_stream_gives_the_extractive_fallback(fake_openai, sleeps):
    fake_openai.enqueue(Reply(text="Rollbacks are manual [1].", end="garbage"))
    pipeline, client = _pipeline(fake_openai, sleeps)
    try:
        final = (await _stream(pipeline))[-1]
    finally:
        await client.aclose()
    assert final.mode == "extractive"
    assert final.notice in (LLM_UNAVAILABLE_NOTICE, LLM_CUT_NOTICE)

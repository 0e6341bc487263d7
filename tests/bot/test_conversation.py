"""Conversation store and follow-up rewriting."""

from __future__ import annotations

from bot.answer.turns import InMemoryConversationStore, Turn
from bot.answer.conversation import clean_rewrite, heuristic_query, standalone_query
from bot.answer.llm import LLMClient
from bot.answer.prompts import REWRITE_SYSTEM_PROMPT, build_rewrite_messages
from bot.settings import LLMSettings
from tests.support.fake_openai import FakeOpenAI, Reply

HISTORY = [Turn("How do I install lorebot on Linux?", "Run make install [1].")]


async def test_store_keeps_the_last_turns_per_key():
    store = InMemoryConversationStore(max_turns=2)
    assert await store.get("t1") == []
    for i in range(3):
        await store.append("t1", Turn(f"q{i}", f"a{i}"))
    await store.append("t2", Turn("other", "x"))
    assert await store.get("t1") == [Turn("q1", "a1"), Turn("q2", "a2")]
    assert await store.get("t2") == [Turn("other", "x")]


async def test_store_forgets_least_recently_used_conversations():
    store = InMemoryConversationStore(max_turns=5, max_conversations=2)
    await store.append("a", Turn("qa", "a"))
    await store.append("b", Turn("qb", "b"))
    await store.get("a")  # "a" is now more recent than "b"
    await store.append("c", Turn("qc", "c"))
    assert await store.get("b") == []
    assert await store.get("a") == [Turn("qa", "a")]


async def test_store_returns_copies():
    store = InMemoryConversationStore()
    await store.append("k", Turn("q", "a"))
    (await store.get("k")).append(Turn("x", "y"))
    assert len(await store.get("k")) == 1


async def test_no_history_means_no_rewrite(llm: LLMClient, fake_openai: FakeOpenAI):
    assert await standalone_query("What is RRF?", [], llm, LLMSettings()) == "What is RRF?"
    assert fake_openai.request_count == 0


async def test_follow_up_is_rewritten_from_the_history(llm: LLMClient, fake_openai: FakeOpenAI):
    fake_openai.enqueue('Standalone query: "How do I install lorebot on Windows?"\n')
    query = await standalone_query("and on Windows?", HISTORY, llm, LLMSettings())
    assert query == "How do I install lorebot on Windows?"
    (request,) = fake_openai.requests
    system, user = request.messages
    assert system["content"] == REWRITE_SYSTEM_PROMPT
    assert "How do I install lorebot on Linux?" in user["content"]
    assert "Run make install [1]." in user["content"]
    assert user["content"].rstrip().endswith("Follow-up: and on Windows?\n\nStandalone query:")
    assert request.body["temperature"] == 0


async def test_rewrite_off_returns_the_question(llm: LLMClient, fake_openai: FakeOpenAI):
    settings = LLMSettings(rewrite_followups=False)
    assert await standalone_query("and on Windows?", HISTORY, llm, settings) == "and on Windows?"
    assert fake_openai.request_count == 0


async def test_failed_rewrite_falls_back_to_the_heuristic(llm: LLMClient, fake_openai: FakeOpenAI):
    fake_openai.enqueue(*[Reply.error(500)] * 3)
    query = await standalone_query("and on Windows?", HISTORY, llm, LLMSettings())
    assert query == "install lorebot Linux and on Windows?"


async def test_without_llm_short_follow_ups_borrow_key_terms():
    assert await standalone_query("and on Windows?", HISTORY, None, LLMSettings()) == (
        "install lorebot Linux and on Windows?"
    )
    long = "What does the reranker do with the fused candidate list exactly?"
    assert heuristic_query(long, HISTORY) == long
    assert heuristic_query("lorebot on Linux?", HISTORY) == "install lorebot on Linux?"


def test_rewrite_history_keeps_the_newest_turns_within_budget():
    history = [Turn(f"question number {i} " + "x" * 200, f"answer {i}") for i in range(10)]
    (_, user) = build_rewrite_messages("and then?", history, budget_tokens=160)
    content = user["content"]
    assert "question number 9" in content and "question number 8" in content
    assert "question number 0" not in content
    assert content.index("question number 8") < content.index("question number 9")


def test_rewrite_history_truncates_a_single_long_turn():
    history = [Turn("long " * 500, "answer")]
    (_, user) = build_rewrite_messages("and then?", history, budget_tokens=50)
    assert "long" in user["content"] and "…" in user["content"]


def test_clean_rewrite():
    assert clean_rewrite('"install lorebot on Windows"') == "install lorebot on Windows"
    assert clean_rewrite("\n\nQuery: reset password\nBecause…") == "reset password"
    assert clean_rewrite("   ") == ""

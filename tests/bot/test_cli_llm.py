"""Answers with an LLM, end to end through the CLI: real MiniLM, a real index of the ``kb`` fixture,
the real ``openai`` client, and the fake OpenAI-compatible server configured through the
environment (``LOREBOT_LLM__MODEL``, ``LOREBOT_LLM__BASE_URL``, ``LOREBOT_LLM__API_KEY``).

The CLI runs its own event loop (``asyncio.run``), so the fake server runs on a loop of its own in
a background thread; the ``chat`` test runs the CLI as a separate process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.answer.pipeline import LLM_UNAVAILABLE_NOTICE, NO_EVIDENCE_TEXT
from bot.cli.main import main
from bot.answer.prompts import REWRITE_SYSTEM_PROMPT, SYSTEM_PROMPT
from bot.settings import AnswerSettings
from tests.support.fake_openai import FakeOpenAI, Reply, ThreadedFakeOpenAI

pytestmark = pytest.mark.slow

API_KEY = "sk-lorebot-test-6f1d2c9a8b7e4d3c"
INDEXING_QUESTION = "How do I choose which files get indexed?"
OFF_TOPIC_QUESTION = "What are the migration patterns of arctic terns?"
FOLLOW_UP = "and what about PDFs?"
REWRITTEN_FOLLOW_UP = "Can lorebot index PDF files, and what do PDFs need?"

# One numbered source of the answer prompt: '<source id="n">' then '[n] title — location'.
_SOURCE = re.compile(r'<source id="(\d+)">\n\[\d+\] (.*?)(?: — (.*))?\n')


def prompt_sources(messages: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
    """(number, title, location) of every source in an answer request's user message."""
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    return [(int(n), title, location) for n, title, location in _SOURCE.findall(user)]


def markers(text: str) -> list[int]:
    return [int(n) for group in re.findall(r"\[([\d, ]+)\]", text) for n in group.split(",")]


@pytest.fixture
def llm_server(data_dir: Path, monkeypatch) -> Iterator[FakeOpenAI]:
    """The fake server, and the environment that points lorebot at it (after ``data_dir``
    cleared any LLM settings of the developer's own)."""
    with ThreadedFakeOpenAI() as server:
        monkeypatch.setenv("LOREBOT_LLM__MODEL", "fake-model")
        monkeypatch.setenv("LOREBOT_LLM__BASE_URL", server.base_url)
        monkeypatch.setenv("LOREBOT_LLM__API_KEY", API_KEY)
        yield server


@pytest.fixture
def indexed(data_dir: Path, kb: Path, capsys) -> Path:
    """The ``kb`` fixture indexed into ``data_dir`` through the CLI."""
    code = main(["index", str(kb), "--source", "handbook", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["chunks"] > 0
    return kb


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ask_json(capsys, question: str, *options: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = run(capsys, *options, "ask", question, "--json")
    return code, json.loads(out), err


# -- (a) cited sources only, renumbered ---------------------------------------------------------


def test_ask_cites_exactly_the_valid_sources_renumbered(llm_server: FakeOpenAI, indexed, capsys):
    seen: list[list[tuple[int, str, str | None]]] = []

    def responder(messages: list[dict[str, Any]]) -> str:
        seen.append(prompt_sources(messages))
        # Sources 1 and 3 exist (asserted below); 9 does not and must disappear.
        return ("Choose files with --include and --exclude glob patterns [1]. Hidden folders are "
                "always skipped [3]. Older versions indexed everything [9].")

    llm_server.responder = responder
    code, answer, err = ask_json(capsys, INDEXING_QUESTION)

    assert code == 0, err
    assert llm_server.request_count == 1
    request = llm_server.requests[0]
    assert request.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert f"Question: {INDEXING_QUESTION}" in request.messages[-1]["content"]
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["authorization"] == f"Bearer {API_KEY}"  # the key reached the server

    sources = seen[0]
    assert [n for n, _, _ in sources] == list(range(1, len(sources) + 1))
    assert 3 <= len(sources) < 9, sources  # [1] and [3] valid, [9] invalid

    assert answer["mode"] == "llm"
    assert answer["answer"] == (
        "Choose files with --include and --exclude glob patterns [1]. Hidden folders are "
        "always skipped [2]. Older versions indexed everything."
    )
    citations = answer["citations"]
    assert [c["n"] for c in citations] == [1, 2]
    assert set(markers(answer["answer"])) == {c["n"] for c in citations}
    # Exactly the cited sources, in the new numbering: [1] is source 1, [2] was source 3.
    by_number = {n: (title, location) for n, title, location in sources}
    assert [(c["title"], c["path"]) for c in citations] == [by_number[1], by_number[3]]
    assert answer["notice"] is None


# -- (b) no evidence, no LLM call ---------------------------------------------------------------


def test_off_topic_question_gets_no_evidence_reply_without_llm_call(
    llm_server: FakeOpenAI, indexed, capsys
):
    # The threshold must trigger on the real model's similarities, not on a tuned test value.
    threshold = AnswerSettings().min_similarity
    code, out, _ = run(capsys, "search", OFF_TOPIC_QUESTION, "--mode", "dense", "-k", "5", "--json")
    similarities = [round(hit["score"], 3) for hit in json.loads(out)["hits"]]
    assert similarities and max(similarities) < threshold, similarities

    code, answer, err = ask_json(capsys, OFF_TOPIC_QUESTION)

    assert code == 0, err
    assert answer["mode"] == "no_evidence"
    assert answer["answer"] == NO_EVIDENCE_TEXT
    assert 1 <= len(answer["citations"]) <= 3  # the nearest sources, shown as such
    assert llm_server.request_count == 0


# -- (c) terminal chat with a follow-up ---------------------------------------------------------


def test_chat_rewrites_the_follow_up_and_streams_the_answer(
    llm_server: FakeOpenAI, indexed, tmp_path: Path
):
    first_answer = "Use --include and --exclude glob patterns when you index [1]."
    second_answer = "PDFs are supported, but they must contain text: scanned PDFs need OCR [1]."

    def responder(messages: list[dict[str, Any]]) -> str:
        if messages[0]["content"] == REWRITE_SYSTEM_PROMPT:
            return REWRITTEN_FOLLOW_UP
        if f"Question: {REWRITTEN_FOLLOW_UP}" in messages[-1]["content"]:
            return second_answer
        return first_answer

    llm_server.responder = responder
    # -v: the chat's own logging goes to stderr, which must not show the key either.
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "-v", "chat"],
        input=f"{INDEXING_QUESTION}\n{FOLLOW_UP}\n", capture_output=True, text=True,
        timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(_repo_root())},
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    kinds = [(r.messages[0]["content"], r.stream) for r in llm_server.requests]
    assert kinds == [(SYSTEM_PROMPT, True), (REWRITE_SYSTEM_PROMPT, False), (SYSTEM_PROMPT, True)]

    rewrite = llm_server.requests[1].messages[-1]["content"]
    assert INDEXING_QUESTION in rewrite and first_answer in rewrite
    assert f"Follow-up: {FOLLOW_UP}" in rewrite
    follow_up = llm_server.requests[2].messages[-1]["content"]
    assert f"Question: {REWRITTEN_FOLLOW_UP}" in follow_up
    assert f"(Asked as a follow-up in a conversation: {FOLLOW_UP})" in follow_up
    assert "PDF" in follow_up  # the rewritten query found the passage about PDFs

    # Both answers were streamed to stdout once each (not printed again after streaming).
    assert result.stdout.count(first_answer) == 1
    assert result.stdout.count(second_answer) == 1
    assert result.stdout.index(first_answer) < result.stdout.index(second_answer)
    assert result.stdout.count("Sources:") == 2
    _assert_no_key(result.stdout, result.stderr)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


# -- (d) the LLM is down ------------------------------------------------------------------------


@pytest.fixture
def dead_llm(data_dir: Path, monkeypatch) -> str:
    """LLM settings pointing at a local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    monkeypatch.setenv("LOREBOT_LLM__MODEL", "fake-model")
    monkeypatch.setenv("LOREBOT_LLM__BASE_URL", url)
    monkeypatch.setenv("LOREBOT_LLM__API_KEY", API_KEY)
    monkeypatch.setenv("LOREBOT_LLM__MAX_RETRIES", "1")  # one retry: exercised, but quick
    return url


def test_dead_llm_falls_back_to_extractive_answer(dead_llm: str, indexed, capsys, caplog):
    caplog.set_level(logging.WARNING)
    code, answer, err = ask_json(capsys, INDEXING_QUESTION)

    assert code == 0, err
    assert answer["mode"] == "extractive"
    assert answer["notice"] == LLM_UNAVAILABLE_NOTICE
    assert answer["citations"] and "[1]" in answer["answer"]
    assert "Traceback" not in err
    assert not any(r.exc_info for r in caplog.records)
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.answer.pipeline"]
    assert len(warnings) == 1 and "unavailable after 2 attempts" in warnings[0]


# -- (e) the API key never shows ----------------------------------------------------------------


def _assert_no_key(*outputs: str) -> None:
    for output in outputs:
        assert API_KEY not in output
        assert API_KEY[3:] not in output  # nor the key without its prefix


def test_api_key_never_appears_in_output_or_logs(llm_server: FakeOpenAI, indexed, capsys, caplog):
    # Everything every logger emits, including third-party debug records, not just -v's INFO.
    caplog.set_level(logging.DEBUG)
    llm_server.responder = lambda messages: "Use --include and --exclude [1]."
    code, answer, err = ask_json(capsys, INDEXING_QUESTION, "-v")
    assert code == 0 and answer["mode"] == "llm"

    # A server that echoes the key back in its error message (as a misconfigured proxy might).
    llm_server.enqueue(Reply.error(401, error_message=f"Incorrect API key provided: {API_KEY}"))
    code, refused, err2 = ask_json(capsys, INDEXING_QUESTION, "-v")
    assert code == 0 and refused["mode"] == "extractive"
    assert any("Incorrect API key provided: ***" in r.getMessage() for r in caplog.records)

    assert caplog.records  # the check below looked at real log output
    _assert_no_key(json.dumps(answer), json.dumps(refused), err, err2, caplog.text)
    for record in caplog.records:
        _assert_no_key(record.getMessage(), repr(record.args))

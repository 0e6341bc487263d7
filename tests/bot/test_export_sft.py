"""`lorebot export sft [--submit]` through the CLI: feedback.jsonl and a real index in, OpenAI chat
fine-tuning JSONL out; `--submit` against the fake OpenAI server (files and fine-tuning jobs)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.answer.prompts import SYSTEM_PROMPT
from tests.support.fake_openai import FakeOpenAI, ThreadedFakeOpenAI
from tests.support.qa_corpus import install_index, qa_index  # noqa: F401 - a fixture
from tests.support.qa_corpus import read_jsonl, run

pytestmark = pytest.mark.slow

API_KEY = "sk-lorebot-sft-test-9f8e7d6c5b4a"
SLACK_TOKEN = "xoxb-1234567890-abcdefghijklmnop"
FILES, JOBS = "/v1/files", "/v1/fine_tuning/jobs"


@pytest.fixture
def indexed(qa_index: Path, data_dir: Path) -> dict[str, str]:  # noqa: F811
    """The corpus in the data dir; returns document path by file name."""
    index = install_index(qa_index, data_dir)
    with sqlite3.connect(index) as conn:
        return {Path(p).name: p for (p,) in conn.execute("SELECT path FROM documents")}


@pytest.fixture
def llm_server(data_dir: Path, monkeypatch) -> Iterator[FakeOpenAI]:
    with ThreadedFakeOpenAI() as server:
        monkeypatch.setenv("LOREBOT_LLM__MODEL", "fake-model")
        monkeypatch.setenv("LOREBOT_LLM__BASE_URL", server.base_url)
        monkeypatch.setenv("LOREBOT_LLM__API_KEY", API_KEY)
        yield server


def feedback(rating: str | None, question: str, answer: str, sources: list[tuple[str, str]],
             *, mode: str = "llm", query: str = "") -> dict[str, Any]:
    """A feedback record as FeedbackStore writes it; ``sources`` are (title, path) pairs."""
    record = {"answer_id": question, "question": question, "answer": answer, "mode": mode,
              "sources": [{"n": n, "title": t, "url": None, "path": p}
                          for n, (t, p) in enumerate(sources, start=1)],
              "user": "U1", "channel": "C1", "thread_ts": None, "team": "T1", "query": query,
              "created": 0.0}
    return {"answer_id": question, "rating": rating, "user": "U2", "channel": "C1",
            "message_ts": "1.2", "answer": record, "created": 0.0}


def write_feedback(data_dir: Path, records: list[dict[str, Any]]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "feedback.jsonl").open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


def good_records(docs: dict[str, str], count: int) -> list[dict[str, Any]]:
    vpn, keys = ("VPN access", docs["vpn.md"]), ("Security keys", docs["security.md"])
    return [feedback("helpful", f"Question {i}: which VPN client do we use?",
                     f"Use the WireGuard client [1]; lost keys go to the IT helpdesk [2]. ({i})",
                     [vpn, keys]) for i in range(count)]


def test_export_writes_chat_examples_with_the_bots_prompt(indexed, data_dir: Path, capsys,
                                                          monkeypatch):
    monkeypatch.setenv("LOREBOT_LLM__API_KEY", API_KEY)  # configured, so it must be scrubbed
    travel = ("Travel policy", indexed["travel.md"])
    records = [
        feedback("helpful", "How much is a hotel night reimbursed?",
                 "Up to 180 euros per night [1].", [travel]),
        feedback("helpful", "and flights?", "Economy class under six hours [1].", [travel],
                 query="Which class may I fly for business travel?"),
        feedback("helpful", f"Is my key {SLACK_TOKEN} still valid?",
                 f"Never share keys like {API_KEY} [1].", [travel]),
        feedback("not_helpful", "Where is the VPN?", "Somewhere [1].", [travel]),
        feedback("wrong_source", "Holidays?", "28 days [1].", [travel]),
        feedback("helpful", "No sources?", "An answer without citations.", []),
        feedback("helpful", "Gone?", "From a deleted page [1].", [("Old", "/gone/page.md")]),
        feedback("helpful", "Extractive?", "> Economy class is required [1]", [travel],
                 mode="extractive"),
        {"answer_id": "x", "rating": "helpful", "user": "U", "channel": "C", "message_ts": None,
         "answer": None, "created": 0.0},
    ]
    write_feedback(data_dir, records)

    code, out, err = run(capsys, "export", "sft", "--json")

    assert code == 0, err
    result = json.loads(out)
    assert result["examples"] == 3 and result["feedback"] == len(records)
    assert result["skipped"] == {"rating": 2, "no_sources": 1, "source_gone": 1, "not_llm": 1,
                                 "no_answer": 1}
    text = (data_dir / "sft.jsonl").read_text(encoding="utf-8")
    assert API_KEY not in text and SLACK_TOKEN not in text and "[redacted]" in text
    examples = read_jsonl(data_dir / "sft.jsonl")
    for example in examples:
        assert set(example) == {"messages"}
        assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]
        assert example["messages"][0]["content"] == SYSTEM_PROMPT
    hotel, flights, _ = examples
    user = hotel["messages"][1]["content"]
    assert user.startswith(f'<sources>\n<source id="1">\n[1] Travel policy — {travel[1]}\n')
    assert "reimbursed up to 180 euros per night" in user  # the passage, read from the index
    assert user.endswith("</sources>\n\nQuestion: How much is a hotel night reimbursed?")
    assert hotel["messages"][2]["content"] == "Up to 180 euros per night [1]."
    follow_up = flights["messages"][1]["content"]
    assert "Question: Which class may I fly for business travel?" in follow_up
    assert "(Asked as a follow-up in a conversation: and flights?)" in follow_up


def test_sources_are_numbered_as_the_answer_cites_them(indexed, data_dir: Path, capsys,
                                                       tmp_path: Path):
    write_feedback(data_dir, good_records(indexed, 1))
    out_file = tmp_path / "train.jsonl"
    code, out, err = run(capsys, "export", "sft", "--out", str(out_file))
    assert code == 0, err
    assert f"wrote 1 examples from 1 feedback records to {out_file}" in out
    (example,) = read_jsonl(out_file)
    user = example["messages"][1]["content"]
    first, second = user.index('<source id="1">\n[1] VPN access'), user.index(
        '<source id="2">\n[2] Security keys')
    assert first < second
    assert "WireGuard client" in user[first:second] and "hardware security key" in user[second:]


def test_submit_uploads_once_and_starts_one_job(llm_server: FakeOpenAI, indexed, data_dir: Path,
                                                capsys):
    write_feedback(data_dir, good_records(indexed, 11))
    code, out, err = run(capsys, "export", "sft", "--submit", "--model", "gpt-4o-mini-2024-07-18",
                         "--json")

    assert code == 0, err
    result = json.loads(out)
    assert result["examples"] == 11
    assert result["job"] == {"id": "ftjob-fake-1", "status": "validating_files",
                             "model": "gpt-4o-mini-2024-07-18", "training_file": "file-fake-1"}
    assert llm_server.request_count == 2
    (upload,) = llm_server.requests_to(FILES)
    (job,) = llm_server.requests_to(JOBS)
    assert upload.body["purpose"] == "fine-tune"
    assert upload.body["content"] == (data_dir / "sft.jsonl").read_text(encoding="utf-8")
    assert job.body["training_file"] == "file-fake-1"
    assert job.body["model"] == "gpt-4o-mini-2024-07-18"
    headers = {k.lower(): v for k, v in job.headers.items()}
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in upload.body["content"]


def test_submit_without_llm_fails_clearly_and_sends_nothing(indexed, data_dir: Path, capsys,
                                                            monkeypatch):
    write_feedback(data_dir, good_records(indexed, 11))
    with ThreadedFakeOpenAI() as server:
        # A base URL but no model: no LLM is configured, and nothing may reach the server.
        monkeypatch.setenv("LOREBOT_LLM__BASE_URL", server.base_url)
        code, out, err = run(capsys, "export", "sft", "--submit")
        assert server.request_count == 0
    assert code == 2
    assert "--submit needs the OpenAI API" in err and "LOREBOT_LLM__MODEL" in err
    assert "Traceback" not in err
    assert len(read_jsonl(data_dir / "sft.jsonl")) == 11  # the file is written all the same


def test_submit_refuses_fewer_than_ten_examples(llm_server: FakeOpenAI, indexed, data_dir: Path,
                                                capsys):
    write_feedback(data_dir, good_records(indexed, 3))
    code, out, err = run(capsys, "export", "sft", "--submit")
    assert code == 2
    assert "at least 10 examples" in err and "has 3" in err
    assert llm_server.request_count == 0

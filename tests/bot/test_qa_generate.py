"""`lorebot qa generate` through the CLI: a real index of four one-chunk documents, the real
``openai`` client and the fake OpenAI server scripted per chunk with good, trivial, duplicate,
unanswerable and non-JSON replies; then the written qa.jsonl as fine-tuning data."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.console import CliError
from bot.training.finetune import _training_data
from bot.training.qa import QA_PROMPT
from bot.settings import Settings
from search.finetune.data import split_by_document
from tests.support.fake_openai import FakeOpenAI, Reply, ThreadedFakeOpenAI
from tests.support.qa_corpus import SOURCE, install_index, qa_index  # noqa: F401 - a fixture
from tests.support.qa_corpus import read_jsonl, run

pytestmark = pytest.mark.slow

API_KEY = "sk-lorebot-qa-test-0a1b2c3d4e5f"
SHARED = "Which team should employees contact with access requests?"  # both vpn and security

GOOD = [
    ("Which client do I use to connect to the office VPN?", "The WireGuard client."),
    ("How long is a VPN profile valid before it needs renewing?", "Profiles expire after 90 days."),
    (SHARED, "The IT helpdesk."),
    ("How soon must a lost security key be reported?", "Within 24 hours."),
    ("What is the maximum hotel cost per night that is reimbursed?", "180 euros per night."),
]


def _qa(question: str, answer: str, answerable: bool = True) -> dict[str, Any]:
    return {"question": question, "answer": answer, "answerable": answerable}


REPLIES = {
    # Plain JSON: two good, one keyword, one the model marks unanswerable, one shared question.
    "WireGuard": json.dumps({"questions": [
        _qa(*GOOD[0]), _qa("VPN?", "WireGuard"),
        _qa("How much does the VPN licence cost per year?", "", answerable=False),
        _qa(*GOOD[1]), _qa(*GOOD[2]),
    ]}),
    # Prose and a code fence around the JSON; the shared question again (other case and
    # punctuation), a repeat within the chunk, and a sentence copied from the chunk.
    "security key": "Here are the questions:\n```json\n" + json.dumps({"questions": [
        _qa(SHARED.lower().rstrip("?"), "The IT helpdesk."), _qa(*GOOD[3]),
        _qa(GOOD[3][0].replace("?", " ?"), GOOD[3][1]),
        _qa("Every engineer receives a hardware security key on the first day?", "Yes."),
    ]}) + "\n```",
    # A bare list: an answer the chunk does not support, a good one, and a malformed item.
    "Economy class": json.dumps([
        _qa("What is the travel desk phone number?", "Call 555-0199 for bookings."),
        _qa(*GOOD[4]), "just a string",
    ]),
    "paid holiday": "Sorry, I can only answer questions about the passage.",
}


def responder(messages: list[dict[str, Any]]) -> str:
    user = messages[-1]["content"]
    for marker, reply in REPLIES.items():
        if marker in user:
            return reply
    raise AssertionError(f"unexpected prompt: {user[:200]}")


@pytest.fixture
def llm_server(data_dir: Path, monkeypatch) -> Iterator[FakeOpenAI]:
    with ThreadedFakeOpenAI() as server:
        server.responder = responder
        monkeypatch.setenv("LOREBOT_LLM__MODEL", "fake-model")
        monkeypatch.setenv("LOREBOT_LLM__BASE_URL", server.base_url)
        monkeypatch.setenv("LOREBOT_LLM__API_KEY", API_KEY)
        yield server


@pytest.fixture
def indexed(qa_index: Path, data_dir: Path) -> Path:  # noqa: F811
    return install_index(qa_index, data_dir)


def test_generate_keeps_good_questions_and_counts_every_drop(
    llm_server: FakeOpenAI, indexed, data_dir: Path, capsys, monkeypatch
):
    monkeypatch.setenv("LOREBOT_FINETUNE__QA_LANGUAGE", "English")
    code, out, err = run(capsys, "qa", "generate", "--per-chunk", "4", "--json")

    assert code == 0, err
    summary = json.loads(out)
    assert summary["chunks"] == 4 and llm_server.request_count == 4
    assert summary["replies"] == {"parsed": 3, "not_json": 1, "failed": 0}
    assert summary["questions"] == 12
    assert summary["kept"] == 5
    assert summary["dropped"] == {"trivial": 2, "duplicate": 2, "unanswerable": 2, "malformed": 1}

    # The prompt from settings, filled in; the chunk as a delimited source.
    system = llm_server.requests[0].messages[0]["content"]
    assert system == QA_PROMPT.replace("{n}", "4").replace("{language}", "English")
    assert "write 4 different questions" in system and "in English" in system
    assert all('<source id="1">' in r.messages[1]["content"] for r in llm_server.requests)

    records = read_jsonl(data_dir / "qa.jsonl")
    assert summary["out"] == str(data_dir / "qa.jsonl")
    by_question = {r["question"].lower().rstrip("?"): r for r in records}
    assert set(by_question) == {q.lower().rstrip("?") for q, _ in GOOD}
    for record in records:
        assert set(record) >= {"question", "answer", "chunk_id", "doc_id", "source"}
        assert record["source"] == SOURCE and record["chunk_id"].startswith(record["doc_id"])
    wire = by_question[GOOD[0][0].lower().rstrip("?")]
    assert wire["answer"] == GOOD[0][1] and wire["path"].endswith("vpn.md")
    assert by_question[GOOD[4][0].lower().rstrip("?")]["path"].endswith("travel.md")


def test_text_summary_and_seeded_sample(llm_server: FakeOpenAI, indexed, data_dir, capsys,
                                        tmp_path):
    out_file = tmp_path / "two.jsonl"
    code, out, err = run(capsys, "qa", "generate", "--max-chunks", "2", "--out", str(out_file))
    assert code == 0, err
    assert f"-> {out_file}" in out and "not JSON (skipped)" in out and "dropped:" in out
    first = [r.messages[1]["content"] for r in llm_server.requests]

    llm_server.requests.clear()
    code, _, err = run(capsys, "qa", "generate", "--max-chunks", "2", "--out", str(out_file))
    assert code == 0, err
    assert len(first) == 2
    assert sorted(r.messages[1]["content"] for r in llm_server.requests) == sorted(first)
    assert not (data_dir / "qa.jsonl").exists()  # --out was honoured


def test_generated_pairs_feed_finetune_training_data(llm_server: FakeOpenAI, indexed,
                                                     data_dir: Path, capsys):
    code, _, err = run(capsys, "qa", "generate", "--json")
    assert code == 0, err
    records = read_jsonl(data_dir / "qa.jsonl")
    # One helpful feedback record too: both kinds of pairs are used together.
    feedback = {"answer_id": "a1", "rating": "helpful", "user": "U1", "channel": "C1",
                "message_ts": None, "created": 0.0,
                "answer": {"answer_id": "a1", "question": "Can I fly business class?",
                           "answer": "Only on flights of six hours or more [1].", "mode": "llm",
                           "sources": [{"n": 1, "title": "Travel policy", "url": None,
                                        "path": records[0]["path"]}],
                           "user": "U1", "channel": "C1", "query": ""}}
    (data_dir / "feedback.jsonl").write_text(json.dumps(feedback) + "\n", encoding="utf-8")

    data = _training_data(argparse.Namespace(dataset=None), Settings())

    questions = set(data["queries"].values())
    assert questions == {r["question"] for r in records} | {"Can I fly business class?"}
    paths = {r["path"] for r in records}
    for qid, question in data["queries"].items():
        (key,) = data["qrels"][qid]  # one positive: the chunk's (or cited) document
        assert key in paths
        if qid.startswith("qa-"):
            assert key == next(r["path"] for r in records if r["question"] == question)
    split = split_by_document(data["qrels"], val_fraction=0.3, seed=13)
    assert split.train and split.validation
    assert not split.train_docs & split.val_docs


def test_finetune_without_any_pairs_says_what_to_do(data_dir: Path):
    with pytest.raises(CliError) as info:
        _training_data(argparse.Namespace(dataset=None), Settings())
    assert "lorebot qa generate" in str(info.value) and "--dataset" in str(info.value)


def test_generate_without_llm_writes_pseudo_questions_that_feed_finetune(
        indexed, data_dir: Path, capsys):
    """No LLM configured: a sentence of each chunk becomes a question for its document, in the
    same qa.jsonl format, and `lorebot finetune` trains on them as on generated questions."""
    from tests.support.qa_corpus import DOCS

    code, out, err = run(capsys, "qa", "generate", "--json")
    assert code == 0, err
    assert "no language model configured" in err and "pseudo-questions" in err
    assert json.loads(out)["pseudo"] == {"sentence": 4}
    records = read_jsonl(data_dir / "qa.jsonl")
    assert len(records) == 4 and {r["how"] for r in records} == {"sentence"}
    for rec in records:
        doc = DOCS[Path(rec["path"]).name]
        assert rec["question"] in " ".join(doc.split()) and len(rec["question"].split()) >= 6
    data = _training_data(argparse.Namespace(dataset=None), Settings())
    assert set(data["queries"].values()) == {r["question"] for r in records}
    assert all(next(iter(data["qrels"][q])) == r["path"]
               for q, r in zip(data["queries"], records))

    code, out, err = run(capsys, "qa", "generate", "--kind", "title", "--json")
    assert code == 0, err
    titles = {r["question"] for r in read_jsonl(data_dir / "qa.jsonl")}
    assert titles == {"VPN access", "Security keys", "Travel policy"}  # "Holidays": one word


def test_no_llm_asks_no_model_even_when_one_is_configured(llm_server: FakeOpenAI, indexed,
                                                          data_dir: Path, capsys):
    code, out, err = run(capsys, "qa", "generate", "--no-llm")
    assert code == 0, err
    assert llm_server.request_count == 0 and "no language model configured" not in err
    assert "wrote 4 pseudo-questions (sentence) from 4 chunks" in out


def test_refused_request_stops_the_run_without_leaking_the_key(
    llm_server: FakeOpenAI, indexed, data_dir: Path, capsys
):
    llm_server.enqueue(*[Reply.error(401, error_message=f"bad key {API_KEY}")] * 4)
    code, out, err = run(capsys, "qa", "generate")
    assert code == 2, out
    assert "refused the request" in err and "HTTP 401" in err
    assert API_KEY not in err and "Traceback" not in err
    assert not (data_dir / "qa.jsonl").exists()

"""Fine-tuning from Slack (issue 8), end to end: signed `/lorebot finetune` commands into the
running app, the fake Slack Web API, a real Valkey queue, a worker in-process, the real MiniLM
and a tiny BEIR dataset. Admins get progress and the before/after table in one Slack message;
everyone else is refused and nothing is queued; a job without training data fails with the
CLI's one-line reason."""

from __future__ import annotations

import json

import logging

import pytest

from bot.jobs.training import result_text
from bot.jobs.queue import JobQueue
from bot.state.redis import make_client
from bot.settings import RedisSettings
from bot.runtime.factories import model_registry
from handlers.training import parse_finetune
from tests.handlers.conftest import ALICE, CHANNEL
from tests.handlers.test_admin import ADMIN, admin_bot
from tests.support.valkey import redis_url, valkey_server  # noqa: F401 - fixtures


@pytest.fixture
async def trainer(data_dir, redis_url, monkeypatch):  # noqa: F811
    # Half the tiny dataset's 8 queries are the guard and half the rest held out, so the gate
    # has something to rank; no candidate can gain 2 in nDCG@10, so the gate refuses and only
    # --force promotes.
    monkeypatch.setenv("LOREBOT_FINETUNE__VAL_FRACTION", "0.5")
    monkeypatch.setenv("LOREBOT_FINETUNE__HELDOUT_FRACTION", "0.5")
    monkeypatch.setenv("LOREBOT_FINETUNE__MIN_GAIN", "2")
    async with admin_bot(data_dir, redis_url) as h:
        yield h


def finetune_messages(h, kind: str = "adapter"):
    """The bot's messages about training ``kind`` that have ended, oldest first."""
    return [m for m in h.slack.bot_messages(CHANNEL)
            if f"Fine-tuned the *{kind}*" in m.text
            or f"Fine-tuning of the *{kind}* failed" in m.text]


async def finished(h, count: int, kind: str = "adapter", timeout: float = 90):
    return (await h.slack.wait_for(
        lambda: (msgs := finetune_messages(h, kind)) and len(msgs) >= count and msgs, timeout))[-1]


@pytest.mark.slow
async def test_an_admin_trains_from_slack_and_gets_the_table_refused_then_forced(
    trainer, tiny_beir, caplog
):
    h = trainer
    caplog.set_level(logging.WARNING, logger="lorebot.audit")
    sent = await h.sender.command(f"finetune adapter dataset={tiny_beir} epochs=1 max_steps=2",
                                  user=ADMIN)
    assert sent.status == 200
    assert sent.json()["response_type"] == "ephemeral"
    assert "Fine-tuning the *adapter*" in sent.json()["text"]
    message = await finished(h, 1)

    # One message, updated: queued, running with its phase, then the verdict and the table.
    updates = [c.args["text"] for c in h.slack.calls_to("chat.update")
               if c.args["ts"] == message.ts]
    assert any("Fine-tuning the *adapter*:" in t for t in updates)
    assert any(p in t for t in updates for p in ("mining hard negatives", "training step",
                                                  "validating the", "indexing the dataset"))
    text = message.text
    assert ":no_entry_sign: Fine-tuned the *adapter*" in text and "refused" in text
    assert "refused: the held-out gain" in text
    assert "Validation on 2 held-out questions (drawn at random) and 4 guard questions" in text
    assert f"<@{ADMIN}>" in text
    table = text.split("```")[1].strip().splitlines()
    assert table[0].split() == ["questions", "metric", "active", "candidate", "change"]
    metrics = ["nDCG@10", "MRR@10", "hit@1", "hit@5", "hit@10"]
    assert table[1].split()[:2] == ["held-out", "nDCG@10"]
    assert [row.split()[0] for row in table[2:6]] == metrics[1:]
    assert "95% interval of the nDCG@10 change over 2 queries" in table[6]
    assert table[7].split()[:2] == ["guard", "nDCG@10"]
    assert "95% interval of the nDCG@10 change over 4 queries" in table[12]
    registry = model_registry(h.settings)
    (cand,) = registry.candidates("adapter")
    assert f"`{cand.id}` refused" in text and registry.active("adapter") is None
    before = cand.metrics["validation"]["before"]["ndcg@10"]
    assert f"nDCG@10  {before:>8.4f}" in text
    audits = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lorebot.audit"]
    assert any(a["action"] == "/lorebot finetune" and a["user"] == ADMIN and a["kind"] == "adapter"
               and a["outcome"] == "done" for a in audits)

    # Anyone may list the models; the candidate is there, not active.
    listed = (await h.sender.command("models", user=ALICE)).json()["text"]
    assert "adapter: the base model" in listed and f"`{cand.id}`" in listed

    # --force (as a Slack client may type it, with an em dash) promotes despite the gate.
    await h.sender.command(f"finetune adapter dataset={tiny_beir} \u2014force max_steps=1",
                           user=ADMIN)
    forced = await finished(h, 2)
    assert forced.ts != message.ts
    assert ":white_check_mark: Fine-tuned the *adapter*" in forced.text
    assert "promoted with --force" in forced.text
    assert "Running bots use it from their next question." in forced.text
    active = registry.active("adapter")
    assert active is not None and f"`{active.id}` promoted" in forced.text
    listed = (await h.sender.command("models", user=ALICE)).json()["text"]
    assert f"adapter: `{active.id}`" in listed and "*(active)*" in listed
    jobs = await h.bot.jobs.recent(5)
    assert [(j.kind, j.source, j.state) for j in jobs] == [("finetune", "adapter", "done")] * 2


async def test_non_admins_are_refused_and_nothing_is_queued(trainer, caplog, tmp_path):
    h = trainer
    caplog.set_level(logging.WARNING, logger="lorebot.audit")
    for text in ("finetune reranker", f"finetune adapter dataset={tmp_path} --force",
                 "models promote adapter-x", "models rollback reranker"):
        body = (await h.sender.command(text, user=ALICE)).json()
        assert body["response_type"] == "ephemeral" and "Only lorebot admins" in body["text"]
    assert await h.bot.jobs.recent() == [] and await h.bot.jobs.queued_ids() == []
    refused = [r.getMessage() for r in caplog.records if "Refused" in r.getMessage()]
    assert len(refused) == 4 and all(ALICE in r for r in refused)
    await h.slack.settle(0.2)
    assert h.slack.bot_messages() == []
    # Admins get the usage for a bad request, and a clear word for a missing dataset directory.
    body = (await h.sender.command("finetune llm", user=ADMIN)).json()
    assert "Usage: `/lorebot finetune adapter|reranker|embedder" in body["text"]
    body = (await h.sender.command(f"finetune adapter dataset={tmp_path / 'nope'}",
                                   user=ADMIN)).json()
    assert "There is no directory" in body["text"]
    assert await h.bot.jobs.recent() == []
    help_text = (await h.sender.command("help", user=ALICE)).json()["text"]
    assert "/lorebot finetune adapter|reranker|embedder" in help_text
    assert "/lorebot models" in help_text


async def test_without_training_data_the_job_fails_with_what_to_do(trainer):
    h = trainer
    sent = await h.sender.command("finetune adapter", user=ADMIN)
    assert "Fine-tuning the *adapter*" in sent.json()["text"]
    message = await finished(h, 1)
    assert message.text.startswith(":x: Fine-tuning of the *adapter* failed: no helpful feedback")
    assert "run `lorebot qa generate`" in message.text and "dataset=DIR" in message.text
    assert "\n" not in message.text and "Traceback" not in message.text
    (job,) = await h.bot.jobs.recent()
    assert job.state == "failed" and job.error in message.text
    # The training lock is free again: the next request is queued.
    await h.sender.command("finetune reranker", user=ADMIN)
    await finished(h, 1, kind="reranker")
    assert [j.source for j in await h.bot.jobs.recent()] == ["reranker", "adapter"]


async def test_one_training_job_at_a_time_whatever_the_model(redis_url):  # noqa: F811
    client = make_client(redis_url, RedisSettings(timeout_s=5))
    try:
        queue = JobQueue(client, "t:")
        first, created = await queue.enqueue("adapter", kind="finetune", params={"force": False})
        second, created_second = await queue.enqueue("reranker", kind="finetune")
        assert created and not created_second and second.id == first.id
        reindex, created_reindex = await queue.enqueue("adapter")  # a source named like a model
        assert created_reindex and reindex.id != first.id
        assert (await queue.get(first.id)).params == {"force": False}
    finally:
        await client.aclose()


def test_the_command_options_parse_and_the_table_renders():
    assert parse_finetune(["Reranker", "dataset=/d", "--force", "epochs=2", "steps=5"]) == (
        "reranker", {"force": True, "dataset": "/d", "epochs": 2, "max_steps": 5})
    assert parse_finetune(["adapter"]) == ("adapter", {"force": False})
    assert parse_finetune(["adapter", "dataset=/d", "questions=/d/pseudo.jsonl"]) == (
        "adapter", {"force": False, "dataset": "/d", "questions": "/d/pseudo.jsonl"})
    assert "don't understand `epochs=x`" in parse_finetune(["adapter", "epochs=x"])
    gate = {"heldout": {"n": 40, "mean": 0.0312, "low": 0.011, "high": 0.052, "passed": True},
            "guard": {"n": 30, "mean": -0.004, "low": -0.03, "high": 0.021, "passed": True},
            "passed": True}
    metrics = {"mode": "hybrid", "ndcg@10": 0.6, "mrr@10": 0.55, "hit@1": 0.5, "hit@5": 0.7,
               "hit@10": 0.8}
    text = result_text({"candidate": "reranker-1", "kind": "reranker", "promoted": True,
                        "gate_passed": True, "gain": 0.0312, "min_gain": 0.005,
                        "validation_queries": 40, "guard_queries": 30, "gate": gate,
                        "before": metrics,
                        "after": {"mode": "rerank", "ndcg@10": 0.6312, "mrr@10": 0.6,
                                  "hit@1": 0.55, "hit@5": 0.7, "hit@10": 0.8},
                        "guard": {"before": metrics, "after": {**metrics, "ndcg@10": 0.596}}})
    assert text.startswith(":white_check_mark: Fine-tuned the *reranker*: `reranker-1` promoted "
                           "by the gate.")
    assert "active hybrid vs candidate rerank retrieval" in text
    assert "held-out  nDCG@10    0.6000     0.6312  +0.0312" in text
    assert "over 40 queries: [+0.0110, +0.0520]: gains" in text
    assert "guard     nDCG@10    0.6000     0.5960  -0.0040" in text
    assert "over 30 queries: [-0.0300, +0.0210]: no harm" in text
    assert "dense weight" not in text
    refused = result_text({"candidate": "adapter-1", "kind": "adapter", "promoted": False,
                           "dense_factor": 2.0, "dense_factor_fit": "out of fold",
                           "gate_passed": False, "min_gain": 0.005, "before": metrics,
                           "after": metrics, "guard": {"before": metrics, "after": metrics},
                           "gate": {"heldout": {**gate["heldout"], "passed": True},
                                    "guard": {"n": 30, "mean": -0.05, "low": -0.08,
                                              "high": -0.02, "passed": False}}})
    assert "`adapter-1` refused: the guard loses beyond its noise (95% interval " \
           "[-0.0800, -0.0200] below zero)" in refused
    assert "fuses with the dense weight x2, fitted on its training questions out of fold" \
        in refused

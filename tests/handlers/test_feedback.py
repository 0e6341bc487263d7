"""Feedback buttons: the rating is stored with the question, answer, sources, user and channel
(Redis stream and JSONL file), and the user gets an ephemeral thanks."""

from __future__ import annotations

import json

import redis

from bot.state.feedback import read_feedback
from tests.handlers.conftest import CHANNEL
from tests.support.fake_slack import API_APP_ID, TEAM_ID

BOB = "U0BOB"


def click(reply, rating: str, *, user: str = BOB, response_url: str) -> dict:
    [actions] = [b for b in reply.blocks if b["type"] == "actions"]
    [button] = [e for e in actions["elements"] if e["action_id"] == "lorebot_feedback_" + rating]
    return {
        "type": "block_actions", "api_app_id": API_APP_ID, "token": "legacy",
        "trigger_id": "trigger-1", "team": {"id": TEAM_ID, "domain": "test"},
        "user": {"id": user, "username": "bob", "team_id": TEAM_ID},
        "container": {"type": "message", "message_ts": reply.ts, "channel_id": reply.channel,
                      "is_ephemeral": False, "thread_ts": reply.thread_ts},
        "channel": {"id": reply.channel, "name": "general"},
        "message": {"type": "message", "ts": reply.ts, "thread_ts": reply.thread_ts,
                    "text": reply.text, "blocks": reply.blocks},
        "response_url": response_url,
        "actions": [{**button, "block_id": actions["block_id"], "action_ts": "1700000999.1"}],
    }


async def test_feedback_is_stored_with_its_answer_and_thanked_privately(harness, redis_url):
    h = harness
    question = await h.mention("How do I set up the VPN?")
    [reply] = await h.replies(CHANNEL, question["ts"])
    sent = await h.sender.action(click(reply, "helpful", response_url=h.slack.response_url()))
    assert sent.status == 200
    [thanks] = await h.slack.wait_for(lambda: h.slack.ephemeral)
    assert thanks["user"] == BOB and thanks["channel"] == CHANNEL
    assert thanks["thread_ts"] == question["ts"] and "Thanks" in thanks["text"]

    [record] = read_feedback(h.settings.data_dir / "feedback.jsonl")
    assert record["rating"] == "helpful" and record["user"] == BOB
    assert record["channel"] == CHANNEL and record["message_ts"] == reply.ts
    answer = record["answer"]
    assert answer["question"] == "How do I set up the VPN?"
    assert "WireGuard" in answer["answer"] and answer["user"] == "U0ALICE"
    assert answer["sources"][0] == {"n": 1, "title": "VPN setup",
                                    "url": "https://wiki.example.com/doc1",
                                    "path": "kb/doc1.md"}
    # The same record is in the Redis stream.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    [(_, fields)] = client.xrange("lorebot:feedback")
    client.close()
    assert json.loads(fields["json"]) == record


async def test_every_rating_is_recorded(harness):
    h = harness
    question = await h.mention("How do I set up the VPN?")
    [reply] = await h.replies(CHANNEL, question["ts"])
    for rating in ("not_helpful", "wrong_source"):
        await h.sender.action(click(reply, rating, response_url=h.slack.response_url()))
    await h.slack.wait_for(lambda: len(h.slack.ephemeral) == 2)
    records = read_feedback(h.settings.data_dir / "feedback.jsonl")
    assert [r["rating"] for r in records] == ["not_helpful", "wrong_source"]

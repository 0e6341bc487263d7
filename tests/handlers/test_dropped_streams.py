"""A streamed reply whose Slack call landed but whose connection dropped before the response
(found by bench/fault_suite.py): still exactly one reply, finished, never an open stream, a
stale preview or an error notice in place of the answer."""

from __future__ import annotations

import pytest

from tests.handlers.conftest import CHANNEL, ScriptedAnswerer, running_bot
from tests.handlers.test_streaming import ANSWER, DELTAS


def _finished(message) -> bool:
    return not message.streaming and any(b.get("type") == "actions" for b in message.blocks)


@pytest.mark.parametrize("method", ["chat.startStream", "chat.appendStream", "chat.stopStream"])
async def test_a_dropped_stream_call_still_ends_in_one_finished_answer(data_dir, redis_url,
                                                                       method):
    answerer = ScriptedAnswerer(DELTAS, ANSWER, pause_s=0.15)
    async with running_bot(data_dir, redis_url, pipeline=answerer) as h:
        h.slack.drop_after(method)
        question = await h.mention("How do I set up the VPN?")
        await h.slack.wait_for(lambda: h.slack.calls_to("reactions.remove") or None)
        await h.slack.settle()
        replies = h.slack.thread(CHANNEL, question["ts"])
    assert len(replies) == 1, [r.text for r in replies]
    [reply] = replies
    assert _finished(reply), (reply.streaming, reply.text)
    assert "went wrong" not in reply.text


async def test_a_dropped_first_preview_in_a_dm_is_not_posted_twice(data_dir, redis_url):
    # A DM's answer has no thread: it streams by post + chat.update, and the lost post is
    # looked up at the DM's top level.
    answerer = ScriptedAnswerer(DELTAS, ANSWER, pause_s=0.15)
    async with running_bot(data_dir, redis_url, pipeline=answerer) as h:
        h.slack.drop_after("chat.postMessage")
        message = h.message("How do I set up the VPN?", channel="D0ALICE", channel_type="im")
        h.slack.add_user_message("D0ALICE", message["ts"], message["text"], message["user"])
        assert (await h.sender.event(message)).status == 200
        await h.slack.wait_for(lambda: h.slack.calls_to("reactions.remove") or None)
        await h.slack.settle()
        replies = h.slack.bot_messages("D0ALICE")
    assert len(replies) == 1, [r.text for r in replies]
    assert _finished(replies[0]), replies[0].text

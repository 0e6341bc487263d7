"""Streaming a reply: Slack's streaming API when it is allowed, post + chat.update when not;
updates throttled; the final message always rendered whole; failures mid-stream still end in
exactly one message."""

from __future__ import annotations

from bot.answer.pipeline import Answer, Citation
from tests.handlers.conftest import ALICE, CHANNEL, ScriptedAnswerer, running_bot
from tests.support.fake_openai import Reply
from tests.support.fake_slack import TEAM_ID

DELTAS = ["Install ", "**WireGuard** ", "and import ", "the profile ", "from the portal [1]."]
ANSWER = Answer(
    text="".join(DELTAS),
    citations=(Citation(1, "VPN setup", "kb/vpn.md", "https://wiki.example.com/vpn",
                        "To set up the VPN, install WireGuard."),),
    mode="llm", notice=None, hits=(),
)


def _final_text(message) -> str:
    return "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")


async def test_native_streaming_then_one_final_render(data_dir, redis_url):
    answerer = ScriptedAnswerer(DELTAS, ANSWER, pause_s=0.15)
    async with running_bot(data_dir, redis_url, pipeline=answerer, update_interval_s=0.2) as h:
        question = await h.mention("How do I set up the VPN?")
        [reply] = await h.replies(CHANNEL, question["ts"])
        await h.slack.settle()
        slack = h.slack
    [start] = slack.calls_to("chat.startStream")
    assert start.args["thread_ts"] == question["ts"]
    assert start.args["recipient_user_id"] == ALICE and start.args["recipient_team_id"] == TEAM_ID
    assert slack.calls_to("chat.appendStream"), "text arrived over time, so it was appended"
    [stop] = slack.calls_to("chat.stopStream")
    assert any(b["type"] == "actions" for b in stop.args["blocks"])
    # Everything was streamed as Markdown, in order, exactly once.
    streamed = [c.args.get("markdown_text") or "" for c in
                [start, *slack.calls_to("chat.appendStream"), stop]]
    assert "".join(streamed) == "".join(DELTAS)
    # Then one update renders the whole answer: mrkdwn, linked citation, sources, buttons.
    [update] = slack.calls_to("chat.update")
    assert update.args["ts"] == reply.ts
    assert "Install *WireGuard* and import the profile from the portal " \
           "<https://wiki.example.com/vpn|[1]>." in _final_text(reply)
    assert slack.calls_to("chat.postMessage") == []
    assert len(slack.bot_messages()) == 1


async def test_refused_streaming_falls_back_to_post_and_update_for_good(data_dir, redis_url):
    answerer = ScriptedAnswerer(DELTAS, ANSWER, pause_s=0.15)
    async with running_bot(data_dir, redis_url, pipeline=answerer, update_interval_s=0.2) as h:
        h.slack.fail("chat.startStream", "not_allowed_token_type")
        first = await h.mention("How do I set up the VPN?")
        [reply] = await h.replies(CHANNEL, first["ts"])
        assert h.bot.native_streaming is False
        second = await h.mention("And the profile?")
        await h.replies(CHANNEL, second["ts"])
        await h.slack.settle()
        slack = h.slack
    assert len(slack.calls_to("chat.startStream")) == 1  # never tried again
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert "<https://wiki.example.com/vpn|[1]>" in _final_text(reply)
    assert len(slack.bot_messages()) == 2


async def test_update_mode_edits_at_most_once_per_interval(data_dir, redis_url):
    answerer = ScriptedAnswerer(DELTAS * 3, ANSWER, pause_s=0.1)
    async with running_bot(data_dir, redis_url, pipeline=answerer, streaming="update",
                           update_interval_s=0.3) as h:
        question = await h.mention("How do I set up the VPN?")
        [reply] = await h.replies(CHANNEL, question["ts"])
        await h.slack.settle()
        slack = h.slack
    [post] = slack.calls_to("chat.postMessage")
    assert post.args["text"].endswith("…")  # a preview, not the answer yet
    updates = slack.calls_to("chat.update")
    assert len(updates) >= 2
    edits = [post.at] + [u.at for u in updates]  # the final render keeps the interval too
    gaps = [b - a for a, b in zip(edits, edits[1:])]
    assert min(gaps) >= 0.3 * 0.9, gaps
    assert any(b["type"] == "actions" for b in reply.blocks)
    assert slack.calls_to("chat.startStream") == []


async def test_failure_mid_stream_turns_the_streamed_message_into_the_error(data_dir, redis_url):
    answerer = ScriptedAnswerer(DELTAS, ANSWER, pause_s=0.15, error=RuntimeError("boom"))
    async with running_bot(data_dir, redis_url, pipeline=answerer, update_interval_s=0.2) as h:
        question = await h.mention("How do I set up the VPN?")
        [reply] = await h.replies(CHANNEL, question["ts"], finished=False)
        await h.slack.settle()
        slack = h.slack
    assert slack.calls_to("chat.stopStream")
    assert "went wrong" in reply.text and "error id" in reply.text
    assert not any(b["type"] == "actions" for b in reply.blocks)
    assert len(slack.bot_messages()) == 1


async def test_llm_breaking_mid_stream_ends_with_the_extractive_answer(llm_harness):
    h = llm_harness
    h.openai.enqueue(Reply(text="Install WireGuard and then [1] more words here", drop_after_chunks=3))
    question = await h.mention("How do I set up the VPN?")
    [reply] = await h.replies(CHANNEL, question["ts"])
    notices = [b["elements"][0]["text"] for b in reply.blocks if b["type"] == "context"]
    assert any("language model is unavailable" in n for n in notices)
    assert "Here are the most relevant passages" in _final_text(reply)

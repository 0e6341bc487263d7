"""Slack's assistant pane: suggested prompts, a "Searching…" status, then the answer."""

from __future__ import annotations

from tests.handlers.conftest import ALICE
from tests.support.fake_slack import TEAM_ID

DM = "D0ASSIST"
THREAD = "1700000500.000001"


def _thread_started() -> dict:
    return {
        "type": "assistant_thread_started", "event_ts": "1700000500.000002",
        "assistant_thread": {"user_id": ALICE, "channel_id": DM, "thread_ts": THREAD,
                             "context": {"channel_id": "C0GENERAL", "team_id": TEAM_ID}},
    }


async def test_thread_start_offers_suggested_prompts(harness):
    assert (await harness.sender.event(_thread_started())).status == 200
    [prompts] = await harness.slack.wait_for(
        lambda: harness.slack.calls_to("assistant.threads.setSuggestedPrompts"))
    assert prompts.args["channel_id"] == DM and prompts.args["thread_ts"] == THREAD
    assert len(prompts.args["prompts"]) >= 2
    assert all({"title", "message"} <= set(p) for p in prompts.args["prompts"])
    [welcome] = harness.slack.thread(DM, THREAD)
    assert "Ask me anything" in welcome.text


async def test_user_message_shows_status_then_answers_in_the_thread(harness):
    h = harness
    await h.sender.event(_thread_started())
    question = h.message("How do I set up the VPN?", channel=DM, channel_type="im",
                         thread_ts=THREAD)
    assert (await h.sender.event(question)).status == 200
    [answer] = await _answers(h, 1)  # after the welcome message
    assert "WireGuard" in answer.blocks[0]["text"]["text"]
    statuses = [c.args["status"] for c in h.slack.calls_to("assistant.threads.setStatus")]
    assert statuses[0] == "Searching…"
    [title] = h.slack.calls_to("assistant.threads.setTitle")
    assert title.args["title"] == "How do I set up the VPN?"
    assert h.slack.calls_to("reactions.add") == []  # the status replaces the reaction
    # A follow-up in the pane keeps the thread's history and does not retitle it.
    await h.sender.event(h.message("and on Windows?", channel=DM, channel_type="im",
                                   thread_ts=THREAD))
    await _answers(h, 2)
    assert h.retriever.queries[-1] == "set VPN and on Windows?"
    await h.slack.settle()
    assert len(h.slack.calls_to("assistant.threads.setTitle")) == 1


async def _answers(h, count: int):
    def answered():
        done = [m for m in h.slack.thread(DM, THREAD)
                if any(b["type"] == "actions" for b in m.blocks)]
        return done if len(done) >= count else None

    return await h.slack.wait_for(answered)


async def test_duplicate_assistant_message_is_answered_once(harness):
    h = harness
    question = h.message("VPN?", channel=DM, channel_type="im", thread_ts=THREAD)
    await h.sender.event(question, event_id="EvA")
    await h.sender.event(question, event_id="EvA", retry_num=1)
    await h.replies(DM, THREAD)
    await h.slack.settle()
    assert len(h.slack.thread(DM, THREAD)) == 1

"""Questions in channels and DMs: one threaded reply per question, duplicates and retries
ignored, bots and edits ignored, thread follow-ups answered with the conversation so far."""

from __future__ import annotations

import logging

from tests.handlers.conftest import ALICE, CHANNEL
from tests.support.fake_slack import BOT_ID, BOT_USER_ID


def _section_text(message) -> str:
    return "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")


async def test_mention_gets_one_threaded_reply_with_citations_and_buttons(harness):
    message = await harness.mention("How do I set up the VPN?")
    [reply] = await harness.replies(CHANNEL, message["ts"])
    await harness.slack.settle()
    assert len(harness.slack.bot_messages()) == 1
    assert "WireGuard" in _section_text(reply)
    assert "<https://wiki.example.com/doc1|[1]>" in _section_text(reply)
    [actions] = [b for b in reply.blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == [
        "lorebot_feedback_helpful", "lorebot_feedback_not_helpful",
        "lorebot_feedback_wrong_source"]
    sources = [b["elements"][0]["text"] for b in reply.blocks if b["type"] == "context"]
    assert any("<https://wiki.example.com/doc1|VPN setup>" in s for s in sources)
    # Progress was shown on the question while searching, and taken away after.
    assert harness.slack.calls_to("reactions.add")[0].args["timestamp"] == message["ts"]
    assert harness.slack.calls_to("reactions.remove")
    assert harness.retriever.queries == ["How do I set up the VPN?"]


async def test_message_and_app_mention_pair_and_retries_get_one_reply(harness):
    message = harness.message(f"<@{BOT_USER_ID}> How do I set up the VPN?")
    mention = harness.app_mention(message)
    send = harness.sender.event
    results = [
        await send(message, event_id="EvMSG"),
        await send(mention, event_id="EvMENTION"),
        await send(mention, event_id="EvMENTION", retry_num=1),  # Slack's retry
        await send(message, event_id="EvMSG", retry_num=2),
    ]
    assert {r.status for r in results} == {200}
    await harness.replies(CHANNEL, message["ts"])
    await harness.slack.settle()
    assert len(harness.slack.bot_messages()) == 1
    assert len(harness.retriever.calls) == 1


async def test_retried_event_alone_is_answered_once(harness):
    message = harness.message(f"<@{BOT_USER_ID}> VPN?")
    for retry in (None, 1, 2):
        assert (await harness.sender.event(message, event_id="EvSAME", retry_num=retry)).status == 200
    await harness.replies(CHANNEL, message["ts"])
    await harness.slack.settle()
    assert len(harness.slack.bot_messages()) == 1


async def test_bots_edits_joins_and_unaddressed_messages_are_ignored(harness):
    h = harness
    events = [
        h.message("VPN?"),  # no mention, not a DM, not a thread the bot is in
        h.message(f"<@{BOT_USER_ID}> VPN?", user=BOT_USER_ID, bot_id=BOT_ID),  # the bot itself
        h.message(f"<@{BOT_USER_ID}> VPN?", user="U0OTHERBOT", bot_id="B0OTHER"),  # another bot
        h.message(f"<@{BOT_USER_ID}> VPN?", subtype="bot_message", user=None),
        h.message(f"<@{BOT_USER_ID}> VPN?", subtype="message_changed"),  # an edit
        h.message(f"<@{BOT_USER_ID}> joined", subtype="channel_join"),
    ]
    for event in events:
        assert (await h.sender.event(event)).status == 200
    await h.slack.settle()
    assert h.slack.bot_messages() == []
    assert h.retriever.calls == []


async def test_direct_message_is_answered_below_it_without_a_thread(harness):
    message = harness.message("How do I set up the VPN?", channel="D0ALICE", channel_type="im")
    await harness.sender.event(message)
    [reply] = await harness.slack.wait_for(
        lambda: [m for m in harness.slack.bot_messages("D0ALICE") if m.blocks])
    assert reply.thread_ts is None
    assert "WireGuard" in _section_text(reply)


async def test_an_empty_mention_gets_a_hint(harness):
    message = await harness.mention("")
    [reply] = await harness.replies(CHANNEL, message["ts"], finished=False)
    assert "What would you like to know?" in reply.text
    assert harness.retriever.calls == []


async def test_follow_up_in_the_thread_needs_no_mention_and_uses_the_history(harness):
    h = harness
    first = await h.mention("How do I set up the VPN?")
    await h.replies(CHANNEL, first["ts"])
    follow = h.message("and on Windows?", thread_ts=first["ts"])
    await h.sender.event(follow)
    await h.replies(CHANNEL, first["ts"], count=2)
    # Without an LLM the follow-up borrows the previous question's key terms.
    assert h.retriever.queries == ["How do I set up the VPN?", "set VPN and on Windows?"]
    # A message in the thread addressed to someone else is not for the bot.
    await h.sender.event(h.message("<@U0BOB> can you check?", thread_ts=first["ts"]))
    await h.slack.settle()
    assert len(h.slack.thread(CHANNEL, first["ts"])) == 2


async def test_follow_ups_can_be_switched_off(data_dir, redis_url):
    from tests.handlers.conftest import running_bot

    async with running_bot(data_dir, redis_url, thread_followups=False) as h:
        first = await h.mention("How do I set up the VPN?")
        await h.replies(CHANNEL, first["ts"])
        await h.sender.event(h.message("and on Windows?", thread_ts=first["ts"]))
        await h.slack.settle()
        assert len(h.slack.thread(CHANNEL, first["ts"])) == 1


async def test_threads_the_bot_never_answered_are_left_alone(harness):
    await harness.sender.event(harness.message("what about this?", thread_ts="1500000000.000001"))
    await harness.slack.settle()
    assert harness.slack.bot_messages() == []


async def test_llm_follow_up_is_rewritten_with_the_thread_history(llm_harness):
    h = llm_harness
    h.openai.enqueue("Install WireGuard and import the profile [1].")
    first = await h.mention("How do I set up the VPN?")
    await h.replies(CHANNEL, first["ts"])
    h.openai.enqueue("VPN setup on Windows", "On Windows, use the WireGuard installer [1].")
    await h.sender.event(h.message("and on Windows?", thread_ts=first["ts"]))
    [_, second] = await h.replies(CHANNEL, first["ts"], count=2)
    rewrite = "\n".join(m["content"] for m in h.openai.requests[1].messages)
    assert "How do I set up the VPN?" in rewrite and "and on Windows?" in rewrite
    assert h.retriever.queries[-1] == "VPN setup on Windows"
    assert "WireGuard installer" in _section_text(second)


async def test_a_failure_gets_a_friendly_reply_with_an_error_id_that_is_logged(
        data_dir, redis_url, caplog):
    from tests.handlers.conftest import ScriptedAnswerer, running_bot

    broken = ScriptedAnswerer([], None, error=RuntimeError("index exploded"))
    caplog.set_level(logging.ERROR, logger="handlers")
    async with running_bot(data_dir, redis_url, pipeline=broken) as h:
        message = await h.mention("How do I set up the VPN?")
        [reply] = await h.replies(CHANNEL, message["ts"], finished=False)
        await h.slack.settle()
    assert "went wrong" in reply.text and "index exploded" not in reply.text
    error_id = reply.text.split("`")[-2]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and "index exploded" in logged[0].exc_text
    assert len(h.slack.bot_messages()) == 1


async def test_rate_limit_answers_kindly_and_only_the_asker_sees_it(data_dir, redis_url):
    from tests.handlers.conftest import running_bot

    async with running_bot(data_dir, redis_url, rate_limit=2, rate_limit_window_s=60) as h:
        asked = []
        for i in range(3):
            asked.append(await h.mention(f"question {i} about the VPN"))
            if i < 2:
                await h.replies(CHANNEL, asked[i]["ts"])
        [note] = await h.slack.wait_for(lambda: h.slack.ephemeral)
        await h.slack.settle()
        assert h.slack.thread(CHANNEL, asked[2]["ts"]) == []
        assert note["user"] == ALICE and note["thread_ts"] == asked[2]["ts"]
        assert "try again in" in note["text"]
        # Another user is not affected.
        other = await h.mention("VPN?", user="U0BOB")
        await h.replies(CHANNEL, other["ts"])

"""The /lorebot slash command: `ask` answers in a thread under the question, anything else
answers with a short help; where the bot cannot post, the asker gets a private answer."""

from __future__ import annotations

from tests.handlers.conftest import ALICE, CHANNEL


async def test_ask_posts_the_question_and_answers_in_its_thread(harness):
    h = harness
    sent = await h.sender.command("ask How do I set up the VPN?")
    assert sent.status == 200 and not sent.body  # acknowledged at once, nothing shown yet
    [header] = await h.slack.wait_for(
        lambda: [m for m in h.slack.bot_messages(CHANNEL) if m.thread_ts is None])
    assert header.text == f"<@{ALICE}> asked: How do I set up the VPN?"
    [reply] = await h.replies(CHANNEL, header.ts)
    assert any(b["type"] == "actions" for b in reply.blocks)
    assert h.retriever.queries == ["How do I set up the VPN?"]
    # The thread is the bot's: a follow-up there needs no mention.
    await h.sender.event(h.message("and on Windows?", thread_ts=header.ts))
    await h.replies(CHANNEL, header.ts, count=2)


async def test_unknown_subcommands_and_bare_command_show_help(harness):
    for text in ("", "help", "frobnicate everything"):
        sent = await harness.sender.command(text)
        assert sent.status == 200
        assert "/lorebot ask QUESTION" in sent.json()["text"]
    sent = await harness.sender.command("ask   ")
    assert "Ask me something" in sent.json()["text"]
    await harness.slack.settle()
    assert harness.slack.bot_messages() == []


async def test_ask_where_the_bot_cannot_post_answers_privately(harness):
    h = harness
    h.slack.closed_channels.add("D0ALICEBOB")
    url = h.slack.response_url("cmd")
    sent = await h.sender.command("ask How do I set up the VPN?", channel="D0ALICEBOB",
                                  response_url=url)
    assert sent.status == 200
    [response] = await h.slack.wait_for(lambda: h.slack.responses)
    assert response["response_type"] == "ephemeral"
    assert any(b["type"] == "actions" for b in response["blocks"])
    assert "WireGuard" in response["blocks"][0]["text"]["text"]
    assert h.slack.bot_messages() == []

"""Trust, end to end (signed events, the fake Slack, a real Valkey): a restricted source never
shows where it is not allowed, a question is answered exactly once, and never left unanswered."""

from __future__ import annotations

import asyncio

from bot.sources.registry import Source
from bot.state.stores import _LocalTTL
from tests.handlers.conftest import ALICE, CHANNEL, ScriptedAnswerer, running_bot
from tests.handlers.test_streaming import ANSWER, DELTAS
from tests.support.valkey import start_valkey, url_of

SECRET = "C0SECRET"


def _indexed(*names):
    async def indexed():
        return list(names)

    return indexed


async def test_a_lost_registry_keeps_indexed_sources_restricted(data_dir, redis_url):
    async with running_bot(data_dir, redis_url) as h:
        # The index holds a source the registry does not know (Redis came back empty).
        h.bot.policy.indexed_sources = _indexed("kb", "secret")
        await h.bot.sources.add(Source("kb", "url", "https://wiki.example.com/"))
        question = await h.mention("How do I set up the VPN?")
        await h.replies(CHANNEL, question["ts"])
        assert h.retriever.calls[-1]["sources"] == ["kb"]


async def test_redis_down_at_start_with_no_known_policy_answers_from_nothing(data_dir, tmp_path):
    server = start_valkey(tmp_path / "valkey")
    url = url_of(server)
    server.stop()  # the bot starts while Redis is down, and has never read the registry
    async with running_bot(data_dir, url) as h:
        h.bot.policy.indexed_sources = _indexed("kb", "secret")
        question = await h.mention("How do I set up the VPN?")
        [reply] = await h.slack.wait_for(lambda: h.slack.thread(CHANNEL, question["ts"]) or None)
        await h.slack.settle()
        assert "cannot check" in reply.text
        assert h.retriever.calls == []  # nothing was searched


async def test_the_policy_last_seen_survives_a_restart_during_an_outage(data_dir, tmp_path):
    server = start_valkey(tmp_path / "valkey")
    try:
        async with running_bot(data_dir, url_of(server)) as h:
            h.bot.policy.indexed_sources = _indexed("kb", "secret")
            await h.bot.sources.add(Source("kb", "url", "https://wiki.example.com/"))
            await h.bot.sources.add(Source("secret", "url", "https://hr.example.com/",
                                           public=False, allowed_channels=(SECRET,)))
            await h.replies(CHANNEL, (await h.mention("VPN?"))["ts"])
        server.stop()
        async with running_bot(data_dir, url_of(server)) as h:  # a restart, Redis still down
            h.bot.policy.indexed_sources = _indexed("kb", "secret")
            await h.replies(CHANNEL, (await h.mention("VPN again?"))["ts"])
            assert h.retriever.calls[-1]["sources"] == ["kb"]
    finally:
        if server.is_running():
            server.stop()


async def test_a_non_member_continuing_a_restricted_thread_sees_public_sources_only(
        data_dir, redis_url):
    async with running_bot(data_dir, redis_url) as h:
        h.bot.policy.indexed_sources = _indexed("kb", "secret")
        await h.bot.sources.add(Source("kb", "url", "https://wiki.example.com/"))
        await h.bot.sources.add(Source("secret", "url", "https://hr.example.com/",
                                       public=False, allowed_channels=(SECRET,)))
        h.slack.members[SECRET] = ["U0BOB"]  # Alice is not a member of the restricted channel
        question = await h.mention("What is the salary policy?", channel=SECRET)
        await h.replies(SECRET, question["ts"])
        assert h.retriever.calls[-1]["sources"] == ["kb"]
        bob = await h.mention("And the bonus policy?", channel=SECRET, user="U0BOB")
        await h.replies(SECRET, bob["ts"])
        allowed = h.retriever.calls[-1]["sources"]
        assert allowed is None or "secret" in allowed  # a member: the channel's sources


async def test_a_retry_of_a_question_answered_before_an_outage_is_not_answered_again(
        data_dir, tmp_path):
    server = start_valkey(tmp_path / "valkey")
    try:
        async with running_bot(data_dir, url_of(server)) as h:
            h.bot.guard.retry_after_s = 0.2
            message = h.message("<@U0LOREBOT> How do I set up the VPN?")
            await h.sender.event(message, event_id="Ev1")
            await h.replies(CHANNEL, message["ts"])
            server.stop()
            await h.sender.event(message, event_id="Ev1", retry_num=1)  # Slack's retry
            await h.slack.settle()
            assert len(h.slack.thread(CHANNEL, message["ts"])) == 1
    finally:
        if server.is_running():
            server.stop()


async def test_a_follow_up_while_redis_is_down_is_answered(data_dir, tmp_path):
    server = start_valkey(tmp_path / "valkey")
    try:
        async with running_bot(data_dir, url_of(server)) as h:
            h.bot.guard.retry_after_s = 0.2
            question = await h.mention("How do I set up the VPN?")
            await h.replies(CHANNEL, question["ts"])
            server.stop()
            h.bot.threads._local = _LocalTTL()  # as after a restart: only Slack knows the thread
            await h.sender.event(h.message("and on Windows?", thread_ts=question["ts"]))
            await h.replies(CHANNEL, question["ts"], count=2)
    finally:
        if server.is_running():
            server.stop()


async def test_a_post_that_landed_before_the_connection_dropped_is_not_sent_twice(
        data_dir, redis_url):
    async with running_bot(data_dir, redis_url) as h:  # extractive: one chat.postMessage
        h.slack.drop_after("chat.postMessage")
        question = await h.mention("How do I set up the VPN?")
        await h.replies(CHANNEL, question["ts"])
        # The answer is over when its progress reaction goes (a client retry would come first).
        await h.slack.wait_for(lambda: h.slack.calls_to("reactions.remove") or None)
        await h.slack.settle()
        assert len(h.slack.thread(CHANNEL, question["ts"])) == 1
        assert len(h.slack.calls_to("chat.postMessage")) == 1


async def test_a_failing_final_edit_is_retried_and_never_replaced_by_an_error(data_dir, redis_url):
    answerer = ScriptedAnswerer(DELTAS, ANSWER, pause_s=0.15)
    async with running_bot(data_dir, redis_url, pipeline=answerer) as h:  # native: one edit, the final
        h.slack.fail("chat.update", "internal_error", times=1)
        question = await h.mention("How do I set up the VPN?")
        await h.slack.settle()
        [reply] = h.slack.thread(CHANNEL, question["ts"])
        assert "went wrong" not in reply.text
        assert any(b["type"] == "actions" for b in reply.blocks)


async def test_shutdown_mid_answer_tells_the_asker_to_ask_again(data_dir, redis_url):
    slow = ScriptedAnswerer(DELTAS, ANSWER, pause_s=5.0)
    async with running_bot(data_dir, redis_url, pipeline=slow) as h:
        question = await h.mention("How do I set up the VPN?")
        await h.slack.wait_for(lambda: h.slack.calls_to("reactions.add") or None)
        await h.bot.drain(0.3)
        [reply] = await h.slack.wait_for(lambda: h.slack.thread(CHANNEL, question["ts"]) or None)
        assert "ask again" in reply.text
        # A question arriving during the shutdown gets the same notice, not silence.
        late = await h.mention("And the VPN profile?", user=ALICE)
        [notice] = await h.slack.wait_for(lambda: h.slack.thread(CHANNEL, late["ts"]) or None)
        assert "ask again" in notice.text
        await asyncio.sleep(0)


async def test_streamed_text_is_escaped_and_sent_within_slacks_limit(data_dir, redis_url):
    from bot.answer.pipeline import Answer

    long = "<!channel> look " + "word " * 2900  # ~14,500 characters, one mention
    answer = Answer(long, (), "llm", None, (), "q")
    answerer = ScriptedAnswerer([long[:7000], long[7000:]], answer, pause_s=0.3)
    async with running_bot(data_dir, redis_url, pipeline=answerer) as h:
        question = await h.mention("Tell me everything")
        await h.replies(CHANNEL, question["ts"])
        await h.slack.settle()
        sent = [c.args.get("markdown_text") or "" for c in
                h.slack.calls_to("chat.startStream") + h.slack.calls_to("chat.appendStream")
                + h.slack.calls_to("chat.stopStream")]
    assert sent and all(len(t) <= 12_000 for t in sent)
    assert "<!channel>" not in "".join(sent) and "&lt;!channel&gt;" in "".join(sent)

"""The Feishu/Lark adapter end to end: encrypted, signed callbacks in, cards out on the fake
Open API, through the same conversation service as Slack, on a real Valkey."""

from __future__ import annotations

import asyncio
import json

from bot.sources.registry import Source
from tests.feishu.conftest import ALICE, GROUP, HITS, running_bot
from tests.support.fake_feishu import card_click, encrypt
from tests.support.fake_openai import Reply


async def test_a_group_mention_gets_one_card_reply_in_its_thread_citing_the_right_document(harness):
    question, _payload, _response = await harness.ask("how do I set up the VPN?")
    [reply] = await harness.feishu.finished_replies(question)
    assert reply.reply_in_thread is True
    # The citation links to its document, the sources section names it, buttons carry the id.
    assert "[[1]](https://wiki.example.com/doc1)" in reply.text
    assert "[VPN setup](https://wiki.example.com/doc1)" in reply.text
    assert "WireGuard" in reply.text
    ratings = [b["value"]["rating"] for b in reply.buttons]
    assert ratings == ["helpful", "not_helpful"]
    answer_id = reply.buttons[0]["value"]["answer_id"]
    record = await harness.bot.feedback.get_answer(answer_id)
    assert record is not None and record.channel == GROUP and record.user == ALICE
    assert harness.retriever.queries == ["how do I set up the VPN?"]  # the mention is removed
    await asyncio.sleep(0.5)
    assert len(harness.feishu.replies_to(question)) == 1


async def test_a_retried_event_and_a_redelivered_message_get_no_second_reply(harness):
    question, payload, _ = await harness.ask("how do I set up the VPN?")
    again = await harness.sender.post(payload)  # Feishu's retry: the same event id
    assert again.status == 200
    redelivered = json.loads(json.dumps(payload))
    redelivered["header"]["event_id"] = "ev_another_delivery"  # same message, new event id
    assert (await harness.sender.post(redelivered)).status == 200
    await harness.feishu.finished_replies(question)
    await asyncio.sleep(1.0)
    assert len(harness.feishu.replies_to(question)) == 1
    assert len(harness.retriever.calls) == 1


async def test_a_bad_signature_a_wrong_key_or_a_wrong_token_is_refused(harness):
    payload = harness.sender.envelope("im.message.receive_v1", {})
    forged = await harness.sender.post(payload, signature="0" * 64)
    wrong_key = await harness.sender.post(payload, key="not-the-encrypt-key")
    assert forged.status == wrong_key.status == 401
    harness.sender.token = "not-the-verification-token"
    payload = harness.sender.envelope("im.message.receive_v1", {})
    assert (await harness.sender.post(payload)).status == 401
    # Unencrypted and unsigned: refused too.
    async with harness.sender.session.post(harness.url, json=payload) as response:
        assert response.status == 401
    await asyncio.sleep(0.3)
    assert harness.feishu.messages == {} and harness.retriever.calls == []


async def test_a_forged_mention_with_a_bad_signature_is_not_answered(harness):
    from tests.support.fake_feishu import message_event

    payload = harness.sender.envelope("im.message.receive_v1", message_event(
        "how do I set up the VPN?", chat_id=GROUP, sender=ALICE, message_id="om_forged"))
    assert (await harness.sender.post(payload, signature="f" * 64)).status == 401
    await asyncio.sleep(0.5)
    assert harness.feishu.messages == {} and harness.retriever.calls == []


async def test_the_url_verification_challenge_is_answered_only_with_the_right_token(harness):
    challenge = {"challenge": "c-123", "token": "verification-token-test",
                 "type": "url_verification"}
    body = json.dumps({"encrypt": encrypt(json.dumps(challenge))})
    async with harness.sender.session.post(harness.url, data=body,
                                           headers={"Content-Type": "application/json"}) as r:
        assert r.status == 200 and (await r.json()) == {"challenge": "c-123"}
    bad = json.dumps({"encrypt": encrypt(json.dumps({**challenge, "token": "wrong"}))})
    async with harness.sender.session.post(harness.url, data=bad) as r:
        assert r.status == 401


async def test_a_restricted_source_is_not_searched_in_another_chat(data_dir, redis_url):
    secret = HITS[0].__class__(**{**HITS[0].__dict__, "chunk_id": "doc9#0", "doc_id": "doc9",
                                  "source": "payroll", "title": "Salary bands",
                                  "text": "VPN salary bands are secret.",
                                  "url": "https://hr.example.com/doc9", "score": 2.0})
    async with running_bot(data_dir, redis_url, hits=(secret, *HITS)) as h:
        await h.bot.sources.put(Source(name="handbook", type="crawl",
                                       location="https://wiki.example.com/"))
        await h.bot.sources.put(Source(name="payroll", type="crawl",
                                       location="https://hr.example.com/", public=False,
                                       allowed_channels=("oc_hr",)))
        elsewhere, _, _ = await h.ask("VPN salary bands?", chat_id=GROUP)
        [reply] = await h.feishu.finished_replies(elsewhere)
        assert "Salary bands" not in reply.text and "hr.example.com" not in reply.text
        assert h.retriever.calls[-1]["sources"] == ["handbook"]
        allowed, _, _ = await h.ask("VPN salary bands?", chat_id="oc_hr")
        [reply] = await h.feishu.finished_replies(allowed)
        assert "Salary bands" in reply.text
        assert h.retriever.calls[-1]["sources"] is None  # every source is visible there


async def test_the_llm_down_gives_the_extractive_answer_with_a_notice(data_dir, redis_url,
                                                                       dead_llm_url):
    async with running_bot(data_dir, redis_url, llm_url=dead_llm_url) as h:
        question, _, _ = await h.ask("how do I set up the VPN?")
        [reply] = await h.feishu.finished_replies(question, timeout=30)
        assert "language model is unavailable" in reply.text
        assert "WireGuard" in reply.text and "[VPN setup](https://wiki.example.com/doc1)" in reply.text
        assert reply.buttons


async def test_an_llm_answer_streams_into_one_card_patched_at_most_once_a_second(
        data_dir, redis_url, fake_openai):  # noqa: F811
    fake_openai.enqueue(Reply(text=(
        "To set up the VPN, install WireGuard and import the profile from the IT portal [1]. "
        * 3).strip(), chunk_delay_s=0.06))
    async with running_bot(data_dir, redis_url, llm_url=fake_openai.base_url) as h:
        question, _, _ = await h.ask("how do I set up the VPN?")
        [reply] = await h.feishu.finished_replies(question, timeout=30)
        assert "[[1]](https://wiki.example.com/doc1)" in reply.text and reply.buttons
        assert len(reply.cards) >= 2, "the answer did not stream"
        assert reply.cards[0]["elements"][0]["content"].endswith(" …")
        times = [reply.sent_at, *reply.patch_times]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g >= 0.95 for g in gaps), gaps
        assert len(h.feishu.replies_to(question)) == 1


async def test_a_direct_chat_is_answered_without_a_mention_and_a_plain_group_message_is_not(harness):
    direct, _, _ = await harness.ask("how do I set up the VPN?", chat_id="oc_p2p_alice",
                                     chat_type="p2p", mention_bot=False)
    [reply] = await harness.feishu.finished_replies(direct)
    assert reply.reply_in_thread is False and "WireGuard" in reply.text
    chatter, _, _ = await harness.ask("lunch anyone?", mention_bot=False)
    await asyncio.sleep(0.6)
    assert harness.feishu.replies_to(chatter) == []


async def test_a_follow_up_in_the_thread_is_answered_with_the_thread_as_memory(harness):
    first, _, _ = await harness.ask("how do I set up the VPN?")
    await harness.feishu.finished_replies(first)
    follow, _, _ = await harness.ask("and when does it expire?", mention_bot=False, root_id=first)
    [reply] = await harness.feishu.finished_replies(follow)
    assert reply.reply_in_thread is True
    turns = await harness.bot.service.conversations.get(f"lark:{GROUP}:{first}")
    assert [t.question for t in turns] == ["how do I set up the VPN?", "and when does it expire?"]


async def test_a_feedback_click_is_stored_with_the_answer(harness):
    question, _, _ = await harness.ask("how do I set up the VPN?")
    [reply] = await harness.feishu.finished_replies(question)
    value = reply.buttons[1]["value"]
    payload = harness.sender.envelope("card.action.trigger", card_click(
        value=value, user=ALICE, chat_id=GROUP, message_id=reply.message_id))
    response = await harness.sender.post(payload)
    assert response.status == 200
    lines = (harness.settings.data_dir / "feedback.jsonl").read_text().splitlines()
    [record] = [json.loads(line) for line in lines]
    assert record["rating"] == "not_helpful" and record["user"] == ALICE
    assert record["answer"]["question"] == "how do I set up the VPN?"
    assert record["message_ts"] == reply.message_id


async def test_a_failure_replies_with_an_error_id(data_dir, redis_url):
    class Broken:
        async def stream(self, question, history=(), sources=None):
            raise RuntimeError("the index is gone")
            yield  # pragma: no cover

    async with running_bot(data_dir, redis_url, pipeline=Broken()) as h:
        question, _, _ = await h.ask("how do I set up the VPN?")
        [reply] = await h.feishu.finished_replies(question)
        assert "error id" in reply.text


async def test_the_rate_limit_gets_a_visible_reply(data_dir, redis_url):
    async with running_bot(data_dir, redis_url, rate_limit=1) as h:
        first, _, _ = await h.ask("how do I set up the VPN?")
        await h.feishu.finished_replies(first)
        second, _, _ = await h.ask("and the profile?")
        [reply] = await h.feishu.finished_replies(second)
        assert "faster than I can answer" in reply.text


async def test_a_non_admins_add_is_refused_and_audited(harness, caplog):
    question, _, _ = await harness.ask("/lorebot add https://evil.example.com/")
    [reply] = await harness.feishu.finished_replies(question)
    assert "Only lorebot admins" in reply.text
    assert await harness.bot.sources.list() == []
    assert harness.retriever.calls == []
    [audit] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lorebot.audit"]
    assert audit["outcome"] == "refused" and audit["user"] == ALICE


async def test_an_admin_allows_a_restricted_source_in_a_chat(harness):
    await harness.bot.sources.put(Source(name="payroll", type="crawl",
                                         location="https://hr.example.com/", public=False))
    question, _, _ = await harness.ask("/lorebot channel allow payroll", sender="ou_admin")
    [reply] = await harness.feishu.finished_replies(question)
    assert "now search" in reply.text
    assert (await harness.bot.sources.get("payroll")).allowed_channels == (GROUP,)


async def test_an_admin_adds_a_source_and_a_reindex_is_queued(harness):
    question, _, _ = await harness.ask("/lorebot add https://docs.example.com/ handbook2 --private",
                                       sender="ou_admin")
    [reply] = await harness.feishu.finished_replies(question)
    assert "Added **handbook2**" in reply.text and "restricted" in reply.text
    source = await harness.bot.sources.get("handbook2")
    assert source is not None and not source.public and source.created_by == "ou_admin"
    [job] = await harness.bot.jobs.recent()
    assert job.source == "handbook2" and job.state == "queued" and job.requested_by == "ou_admin"


async def test_remove_is_refused_to_non_admins_and_asks_an_admin_to_confirm(harness, caplog):
    await harness.bot.sources.put(Source(name="handbook", type="crawl",
                                         location="https://wiki.example.com/"))
    removed: list[str] = []

    async def remove_documents(name):
        removed.append(name)
        return 3

    harness.bot.remove_documents = remove_documents
    refused, _, _ = await harness.ask("/lorebot remove handbook")
    [r1] = await harness.feishu.finished_replies(refused)
    assert "Only lorebot admins" in r1.text
    ask, _, _ = await harness.ask("/lorebot remove handbook", sender="ou_admin")
    [r2] = await harness.feishu.finished_replies(ask)
    assert "--confirm" in r2.text and await harness.bot.sources.get("handbook") is not None
    assert removed == []
    done, _, _ = await harness.ask("/lorebot remove handbook --confirm", sender="ou_admin")
    [r3] = await harness.feishu.finished_replies(done)
    assert "Removed **handbook** (3 documents" in r3.text
    assert await harness.bot.sources.get("handbook") is None and removed == ["handbook"]
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lorebot.audit"]
    assert [(r["outcome"], r["user"]) for r in records] == [("refused", ALICE),
                                                             ("done", "ou_admin")]


async def test_an_expired_tenant_token_is_renewed_and_the_reply_still_goes_out(harness):
    assert harness.feishu.token_requests == 1  # at start-up, for bot/v3/info
    harness.feishu.tenant_token = "t-rotated"  # Feishu expired the one the bot holds
    question, _, _ = await harness.ask("how do I set up the VPN?")
    [reply] = await harness.feishu.finished_replies(question)
    assert reply.buttons and harness.feishu.token_requests == 2


async def test_a_policy_that_cannot_be_read_searches_nothing_and_says_so(harness):
    from bot.sources.policy import PolicyUnavailableError

    async def unreadable(_channel, *, cached=False):
        raise PolicyUnavailableError("the registry is unavailable")

    harness.bot.policy.sources_for = unreadable
    question, _, _ = await harness.ask("how do I set up the VPN?")
    [reply] = await harness.feishu.finished_replies(question)
    assert "cannot check right now which documents may be shown here" in reply.text
    assert ":warning:" not in reply.text
    assert harness.retriever.calls == [] and not reply.buttons


async def test_a_verified_event_nobody_handles_is_acknowledged_and_dropped(harness):
    for event_type in ("im.chat.updated_v1", "im.message.message_read_v1"):
        payload = harness.sender.envelope(event_type, {"chat_id": GROUP})
        assert (await harness.sender.post(payload)).status == 200  # else Feishu retries it
    await asyncio.sleep(0.3)
    assert harness.feishu.messages == {}


async def test_a_mention_without_a_question_gets_a_hint(harness):
    question, _, _ = await harness.ask("")
    [reply] = await harness.feishu.finished_replies(question)
    assert "Ask me a question" in reply.text and harness.retriever.calls == []


async def test_an_answer_cut_short_by_shutdown_tells_the_asker_to_ask_again(data_dir, redis_url):
    class Stuck:
        async def stream(self, question, history=(), sources=None):
            yield "Looking into it"
            await asyncio.sleep(3600)

    async with running_bot(data_dir, redis_url, pipeline=Stuck()) as h:
        question, _, _ = await h.ask("how do I set up the VPN?")
        await h.feishu.wait_for(lambda: h.feishu.replies_to(question))  # the stream started
        await h.bot.drain(timeout_s=0.2)
        [reply] = await h.feishu.finished_replies(question)
        assert "restarting" in reply.text and len(h.feishu.replies_to(question)) == 1

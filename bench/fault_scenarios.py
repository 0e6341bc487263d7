"""The fault suite's scenarios: each drives one :class:`bench.fault_harness.World` through a
fault and leaves the counting to it.

The fake LLM answers with the prompt it was sent (the default responder) unless a scenario
scripts a reply: a restricted passage that reached the prompt then shows in the reply, so the
leak count sees what was searched as well as what was posted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bench.fault_harness import PUBLIC_CHANNEL, VAULT_Q, VPN_Q, Question, World
from bench.fault_setup import SECRET_CHANNEL

ANSWER = ("To set up the VPN, install WireGuard and import the profile from the IT portal [1]. "
          "Profiles expire after 90 days and the helpdesk issues new ones [1].")
# After Redis failed, the bot's guard skips it for 5 s (bot.state.redis.RETRY_AFTER_S): the
# questions "after" a restart are asked once it looks again.
GUARD_RETRY_S = 6.0


async def ask(w: World, questions: list[Question], timeout: float = 60.0) -> list[Question]:
    await w.send(questions)
    await w.wait(questions, timeout)
    return questions


async def ask_scripted(w: World, q: Question, *replies) -> None:
    """Queue the LLM's behaviour for ``q`` and send it; returns once the LLM was asked, so the
    next question's script is not consumed by this one."""
    before = w.openai.request_count
    w.openai.enqueue(*replies)
    await w.send([q])
    await w.slack.wait_for(lambda: w.openai.request_count > before, 60)


async def redis_down_at_start(w: World) -> None:
    """A first start with Redis down (no policy snapshot yet): the policy cannot be read, so a
    notice everywhere, nothing searched; then Redis comes up with the registry, and Slack
    retries the outage's questions."""
    await w.start_bot()
    outage = await ask(w, w.round("Redis down"))
    w.start_redis()
    await asyncio.sleep(GUARD_RETRY_S)
    back = w.round("Redis back")
    await asyncio.gather(w.send(back), w.send(outage, retry_num=1))
    await w.wait(back + outage)
    await w.stop_bot()


async def redis_stopped_mid_run(w: World) -> None:
    """Questions before, during and after an outage; during it, Slack retries questions
    answered before and follow-ups come in threads answered before; after it, retries of the
    outage's questions."""
    w.start_redis()
    await w.start_bot()
    before = await ask(w, w.round("before"))
    w.stop_redis()
    during = w.round("during") + [w.followup(before[0], "during"), w.followup(before[1], "during")]
    await asyncio.gather(w.send(during), w.send(before, retry_num=1))
    await w.wait(during + before)
    w.start_redis()
    w.notes.append(f"Valkey restarted with its data; registry kept: {w.registry_kept()}")
    await asyncio.sleep(GUARD_RETRY_S)
    after = w.round("after") + [w.followup(during[0], "after")]
    await asyncio.gather(w.send(after), w.send(during, retry_num=2),
                         w.send(before, retry_num=2))
    await w.wait(after + during + before)
    await w.stop_bot()


async def redis_restarted_empty(w: World) -> None:
    """Redis comes back empty: the registry is lost (restricted sources must not turn public),
    and so are the dedupe claims (retries of questions answered before must not be answered
    again) and the threads the bot answered in (follow-ups there still get a reply)."""
    w.start_redis()
    await w.start_bot()
    before = await ask(w, w.round("before"))
    w.stop_redis()
    w.start_redis(empty=True)
    w.notes.append(f"Valkey restarted empty; registry kept: {w.registry_kept()}")
    after = w.round("registry lost") + [w.followup(before[0], "registry lost"),
                                        w.followup(before[1], "registry lost")]
    await asyncio.gather(w.send(after), w.send(before, retry_num=1))
    await w.wait(after + before)
    await w.stop_bot()


async def slack_drop_post(w: World) -> None:
    """Slack carries out chat.postMessage and the connection drops before its response: the
    bot must not post the reply a second time (nor leave the question unanswered). Replies in
    one piece ("not covered"; the extractive answer when the LLM fails at once: an LLM answer
    may or may not beat the first flush, so it would not reliably be one post), and a streamed
    DM answer, whose first preview is a postMessage (no thread there: update mode)."""
    from tests.support.fake_openai import Reply

    w.start_redis()
    await w.start_bot()
    one_piece = [(w.one("B: vpn (LLM down, extractive)", "post dropped"), Reply.error(500)),
                 (w.one("B: vault (not covered)", "post dropped", text=VAULT_Q), None),
                 (w.one("A member: vault (LLM down, extractive)", "post dropped",
                        channel=SECRET_CHANNEL, text=VAULT_Q), Reply.error(500)),
                 (w.dm("DM: vpn (streamed preview)", "post dropped"),
                  Reply(text=ANSWER, chunk_delay_s=0.1))]
    for q, reply in one_piece:
        w.drop_after("chat.postMessage")
        if reply is None:
            await w.send([q])
        else:
            await ask_scripted(w, q, reply)
        await w.wait([q])
        w.check_drops()
    await w.stop_bot()


async def slack_drop_stream(w: World) -> None:
    """The same after chat.startStream (the stream must still be stopped, once), after
    chat.appendStream and after chat.stopStream (the answer must still get its final form,
    once)."""
    from tests.support.fake_openai import Reply

    w.start_redis()
    await w.start_bot()
    for method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
        q = w.one(f"B: vpn (streamed, {method} dropped)", f"{method} dropped")
        w.drop_after(method)
        await ask_scripted(w, q, Reply(text=ANSWER, chunk_delay_s=0.1))
        await w.wait([q])
        w.check_drops()
    await w.stop_bot()


async def _llm_faults(w: World, faults: list[tuple[str, str, object]]) -> None:
    w.start_redis()
    await w.start_bot()
    asked = []
    for label, channel, reply in faults:
        q = w.one(label, "LLM fault", channel=channel,
                  text=VAULT_Q if channel == SECRET_CHANNEL else VPN_Q)
        await ask_scripted(w, q, reply)
        asked.append(q)
    await w.wait(asked, timeout=60)
    await w.stop_bot()


async def llm_hang(w: World) -> None:
    """The LLM sends nothing (past LLM__FIRST_TOKEN_S = 4 s), or stalls mid-answer (past
    LLM__ANSWER_DEADLINE_S = 8 s): the extractive answer with its notice."""
    from tests.support.fake_openai import Reply

    await _llm_faults(w, [
        ("A member: vault (LLM hangs)", SECRET_CHANNEL, Reply(delay_s=120)),
        ("B: vpn (LLM stalls mid-stream)", PUBLIC_CHANNEL, Reply(text=ANSWER, chunk_delay_s=3)),
    ])


async def llm_cut_stream(w: World) -> None:
    """The stream ends without a finish reason, or the connection drops mid-stream."""
    from tests.support.fake_openai import Reply

    await _llm_faults(w, [
        ("A member: vault (stream ends, no finish)", SECRET_CHANNEL, Reply(end="cut")),
        ("B: vpn (connection dropped mid-stream)", PUBLIC_CHANNEL,
         Reply(text=ANSWER, drop_after_chunks=6, chunk_delay_s=0.1)),
    ])


async def llm_broken_stream(w: World) -> None:
    """A chunk that is not JSON, at once or after text was already streamed."""
    from tests.support.fake_openai import Reply

    await _llm_faults(w, [
        ("A member: vault (broken JSON chunk)", SECRET_CHANNEL, Reply(end="garbage")),
        ("B: vpn (broken JSON after streaming)", PUBLIC_CHANNEL,
         Reply(text=ANSWER, end="garbage", chunk_delay_s=0.1)),
    ])


async def sigterm_mid_answer(w: World) -> None:
    """SIGTERM while answers wait on the LLM (one finishes within the drain, one never would)
    and while one streams; then the bot starts again while Redis is down and answers from the
    policy it saved (data_dir/policy-snapshot.json)."""
    from tests.support.fake_openai import Reply

    w.start_redis()
    # LLM deadlines past the drain: the answers still in flight then are the shutdown's, not
    # cut short by a deadline first.
    await w.start_bot(SLACK__DRAIN_S="4", LLM__FIRST_TOKEN_S="90", LLM__ANSWER_DEADLINE_S="90")
    await ask(w, w.round("before"))
    slow = w.one("B: vpn (LLM 60 s)", "SIGTERM")
    await ask_scripted(w, slow, Reply(text=ANSWER, delay_s=60))
    streaming = w.one("A member: vault (streaming 30 s)", "SIGTERM", channel=SECRET_CHANNEL,
                      text=VAULT_Q)
    await ask_scripted(w, streaming, Reply(text=ANSWER, chunk_delay_s=1.0))  # ~25 s
    await w.slack.wait_for(lambda: w.replies(streaming), 30)
    fast = w.one("B: vpn (LLM 2 s)", "SIGTERM")
    await ask_scripted(w, fast, Reply(text=ANSWER, delay_s=2))
    code = await w.stop_bot()
    w.notes.append(f"bot exited {code} after SIGTERM")
    await w.wait([slow, streaming, fast], timeout=5)
    w.stop_redis()
    await w.start_bot()
    await ask(w, w.round("restarted, Redis down"))
    await w.stop_bot()


SCENARIOS: dict[str, Callable[[World], Awaitable[None]]] = {
    "redis_down_at_start": redis_down_at_start,
    "redis_stopped_mid_run": redis_stopped_mid_run,
    "redis_restarted_empty": redis_restarted_empty,
    "slack_drop_post": slack_drop_post,
    "slack_drop_stream": slack_drop_stream,
    "llm_hang": llm_hang,
    "llm_cut_stream": llm_cut_stream,
    "llm_broken_stream": llm_broken_stream,
    "sigterm_mid_answer": sigterm_mid_answer,
}

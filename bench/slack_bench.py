"""Slack bot under a burst: N concurrent @mentions, signed, over HTTP.

Each question arrives as Slack sends it, a ``message`` and an ``app_mention`` event, and a share
of them is retried (``X-Slack-Retry-Num``). The bot runs in a process of its own, as in production, with a real embedded Valkey, the real answer pipeline and LLM client,
a fixed retriever and the fake OpenAI server answering after a fixed delay. The fake Slack Web
API records every call.

Reports ack latency (p50/p99 over every HTTP request, next to the same burst against a server
that does nothing: the floor set by the client and the machine), time from the question to its final reply
(p50/p95), time to the first visible text, replies lost and duplicate replies. Prints a table and
writes bench/results/slack_bench.json.

    .venv/bin/python bench/slack_bench.py [--questions 50] [--llm-delay 1.0] [--retry-share 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median, percentile, print_table, write_result  # noqa: E402

ANSWER = ("To set up the VPN, install WireGuard and import the profile from the IT portal [1]. "
          "Profiles expire after 90 days; the helpdesk issues new ones [2].")
CHANNEL = "C0BENCH"


class FixedRetriever:
    """The retriever protocol over two fixed hits: retrieval is not what this measures."""

    has_reranker = False
    default_mode = "hybrid"

    def __init__(self) -> None:
        from search.models import Hit

        self.hits = [
            Hit(chunk_id=f"d{n}#0", doc_id=f"d{n}", source="kb", title=title, text=text,
                score=1.0 / n, url=f"https://wiki.example.com/d{n}", similarity=0.8)
            for n, (title, text) in enumerate([
                ("VPN setup", "Install WireGuard and import the profile from the IT portal."),
                ("VPN profiles", "Profiles expire after 90 days; ask the helpdesk for a new one."),
            ], start=1)
        ]

    async def search(self, query: str, *, mode=None, k: int = 10,
                     sources: Sequence[str] | None = None):
        return self.hits[:k]


def _bot_process(config: dict, conn) -> None:
    """The bot in a process of its own, as in production: Slack and the LLM are elsewhere."""
    asyncio.run(_serve_bot(config, conn))


async def _serve_bot(config: dict, conn) -> None:
    from pydantic import SecretStr

    from bot.answer.pipeline import AnswerPipeline
    from bot.answer.llm import build_llm
    from bot.state.redis import make_client
    from bot.settings import LLMSettings, RedisSettings, Settings, SlackSettings
    from aiohttp import web

    from bot.slack.app import SlackBot
    from bot.slack.server import SlackHttpServer
    from handlers.app import build_app

    logging.basicConfig(level=logging.WARNING)
    s = Settings(
        _env_file=None, data_dir=Path(config["data_dir"]),
        llm=LLMSettings(model="fake-model", base_url=config["llm_url"],
                        api_key=SecretStr("sk-bench"), max_retries=0, timeout_s=60),
        slack=SlackSettings(bot_token=SecretStr(config["bot_token"]),
                            signing_secret=SecretStr(config["signing_secret"]),
                            api_url=config["api_url"]),
        redis=RedisSettings(url=SecretStr(config["redis_url"])),
    )
    llm = build_llm(s.llm, environ={})
    redis = make_client(config["redis_url"], s.redis)
    bot = SlackBot.create(s, AnswerPipeline(FixedRetriever(), llm, s), redis)
    handler_ms: list[float] = []

    @web.middleware
    async def timed(request, handler):
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            handler_ms.append((time.perf_counter() - started) * 1000)

    server = SlackHttpServer(build_app(bot), bot, middlewares=[timed])
    await bot.warm_up()  # as `lorebot serve` does before it listens
    conn.send(await server.start("127.0.0.1", 0))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
    await server.stop(drain_s=60)
    await bot.aclose()
    await redis.aclose()
    await llm.aclose()
    measured = handler_ms[1:]  # without the warm-up request
    conn.send({"p50": percentile(measured, 50), "p99": percentile(measured, 99)})


def _floor_process(config: dict, conn) -> None:
    """A bare aiohttp server answering 200 at once: the floor of what the client can measure."""

    async def serve() -> None:
        from aiohttp import web

        async def ok(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/slack/events", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        conn.send(runner.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await runner.cleanup()
        conn.send({})

    asyncio.run(serve())


class BotProcess:
    """Starts :func:`_bot_process` and stops it; ``start`` returns the port it listens on."""

    def __init__(self, config: dict, target=_bot_process) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=target, args=(config, child), daemon=True)
        self.server_stats: dict = {}

    def start(self) -> int:
        self._process.start()
        if not self._conn.poll(120):
            raise RuntimeError("the bot did not start within 120 s")
        return self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        if self._conn.poll(90):
            self.server_stats = self._conn.recv()
        self._process.join(30)
        if self._process.is_alive():
            self._process.kill()


def _final_at(slack, channel: str, thread_ts: str) -> tuple[float | None, float | None, int]:
    """When the thread's reply was first visible and when it was final; how many replies."""
    replies = slack.thread(channel, thread_ts)
    first = final = None
    for call in slack.calls:
        a = call.args
        in_thread = a.get("thread_ts") == thread_ts or any(
            a.get("ts") == m.ts for m in replies)
        if not in_thread or call.method not in (
                "chat.postMessage", "chat.startStream", "chat.update", "chat.stopStream"):
            continue
        first = first or call.at
        if any(b.get("type") == "actions" for b in (a.get("blocks") or [])) \
                and call.method != "chat.stopStream":
            final = call.at
    return first, final, len(replies)


async def run(questions: int, llm_delay: float, retry_share: float, timeout: float) -> dict:
    from tests.support.fake_openai import FakeOpenAI, Reply
    from tests.support.fake_slack import BOT_TOKEN, BOT_USER_ID, SIGNING_SECRET, FakeSlack
    from tests.support.valkey import start_valkey, url_of

    with tempfile.TemporaryDirectory(prefix="lorebot-bench-") as tmp:
        valkey = start_valkey(Path(tmp) / "valkey")
        try:
            async with FakeSlack() as slack, FakeOpenAI() as openai:
                openai.enqueue(*[Reply(text=ANSWER, delay_s=llm_delay) for _ in range(questions)])
                bot = BotProcess({
                    "data_dir": str(Path(tmp) / "data"), "llm_url": openai.base_url,
                    "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET,
                    "api_url": slack.api_url, "redis_url": url_of(valkey),
                })
                loop = asyncio.get_running_loop()
                port = await loop.run_in_executor(None, bot.start)
                try:
                    result = await _burst(slack, openai, port, questions, retry_share, timeout,
                                          BOT_USER_ID, llm_delay)
                finally:
                    await loop.run_in_executor(None, bot.stop)
                result["ack_server_ms"] = bot.server_stats
                floor = BotProcess({}, target=_floor_process)
                port = await loop.run_in_executor(None, floor.start)
                try:
                    result["ack_floor_ms"] = await _ack_floor(port, result["http_requests"])
                finally:
                    await loop.run_in_executor(None, floor.stop)
                return result
        finally:
            valkey.stop()


def _signed_request(port: int, body: str, headers: dict[str, str] | None = None) -> bytes:
    """One complete HTTP request, signed now, as bytes: built before the clock starts."""
    from tests.support.fake_slack import sign

    ts = int(time.time())
    data = body.encode()
    lines = [
        "POST /slack/events HTTP/1.1", f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json", f"Content-Length: {len(data)}",
        f"X-Slack-Request-Timestamp: {ts}", f"X-Slack-Signature: {sign(body, ts)}",
        "Connection: close", *[f"{k}: {v}" for k, v in (headers or {}).items()],
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _post(port: int, request: bytes) -> tuple[int, float]:
    """Send a prebuilt request on a new connection (as Slack does); status and seconds to the
    complete response. A raw socket keeps the client's own overhead out of the figure."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    await reader.read()  # to the end: the server closes after the response
    elapsed = time.perf_counter() - started
    writer.close()
    return status, elapsed


def _events(questions: int, retried: int, bot_user: str) -> list[tuple[str, list[dict]]]:
    """Per question: its ts and the deliveries Slack makes (message, app_mention, a retry)."""
    from tests.support.fake_slack import SignedSender

    envelope = SignedSender("unused").event_body
    out = []
    for i in range(questions):
        ts = f"1600000000.{i:06d}"
        message = {"type": "message", "channel": CHANNEL, "user": f"U{i:04d}", "ts": ts,
                   "text": f"<@{bot_user}> How do I set up the VPN? (#{i})",
                   "channel_type": "channel"}
        mention = {**{k: v for k, v in message.items() if k != "channel_type"},
                   "type": "app_mention"}
        deliveries = [{"body": envelope(message, f"EvM{i}")},
                      {"body": envelope(mention, f"EvA{i}")}]
        if i < retried:
            deliveries.append({"body": envelope(mention, f"EvA{i}"),
                               "headers": {"X-Slack-Retry-Num": "1",
                                           "X-Slack-Retry-Reason": "http_timeout"}})
        out.append((ts, deliveries))
    return out


async def _burst(slack, openai, port, questions, retry_share, timeout, bot_user,
                 llm_delay) -> dict:
    retried = max(0, round(questions * retry_share))
    plan = _events(questions, retried, bot_user)
    # One warm-up request outside the measurement: bolt's first request runs auth.test.
    await _post(port, _signed_request(port, json.dumps({"type": "event_callback", "event": {
        "type": "message", "channel": "C0WARM", "user": "U0W", "ts": "1.000001",
        "text": "warm-up", "channel_type": "channel"}, "team_id": "T0TEST"})))
    requests = [(ts, [_signed_request(port, json.dumps(d["body"]), d.get("headers"))
                      for d in deliveries]) for ts, deliveries in plan]
    sent_at: dict[str, float] = {}
    results: list[tuple[int, float]] = []

    async def ask(ts: str, wires: list[bytes]) -> None:
        sent_at[ts] = time.monotonic()
        results.extend(await asyncio.gather(*[_post(port, w) for w in wires]))

    started = time.monotonic()
    await asyncio.gather(*[ask(ts, wires) for ts, wires in requests])

    def all_final() -> bool:
        return all(_final_at(slack, CHANNEL, ts)[1] for ts in sent_at)

    try:
        await slack.wait_for(all_final, timeout)
    except TimeoutError:
        pass
    await slack.settle(0.5)
    elapsed = time.monotonic() - started

    first_text, finals, lost, duplicates = [], [], 0, 0
    for ts, t0 in sent_at.items():
        first, final, count = _final_at(slack, CHANNEL, ts)
        if final is None:
            lost += 1
        else:
            finals.append(final - t0)
            first_text.append(first - t0)
        duplicates += max(0, count - 1)
    ms = [seconds * 1000 for _, seconds in results]
    return {
        "questions": questions, "http_requests": len(results), "retried_events": retried,
        "llm_delay_s": llm_delay, "non_200": sum(1 for status, _ in results if status != 200),
        "ack_ms": {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "max": max(ms)},
        "first_text_s": {"p50": median(first_text)},
        "final_reply_s": {"p50": percentile(finals, 50), "p95": percentile(finals, 95),
                          "max": max(finals) if finals else float("nan")},
        "lost": lost, "duplicates": duplicates, "llm_requests": openai.request_count,
        "slack_calls": len(slack.calls), "wall_s": elapsed,
        "targets": {"ack_p99_ms": 100, "lost": 0, "duplicates": 0},
    }


async def _ack_floor(port: int, requests: int) -> dict:
    """The same burst against a server that does nothing: how much of the ack latency is the
    client, the connections and the machine, not the bot."""
    body = json.dumps({"type": "event_callback", "event": {"type": "message", "text": "x" * 200}})
    wires = [_signed_request(port, body) for _ in range(requests)]
    sent = await asyncio.gather(*[_post(port, w) for w in wires])
    ms = [seconds * 1000 for _, seconds in sent]
    return {"p50": percentile(ms, 50), "p99": percentile(ms, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--llm-delay", type=float, default=1.0, help="seconds before the LLM answers")
    parser.add_argument("--retry-share", type=float, default=0.2,
                        help="share of questions whose app_mention Slack retries")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.questions, args.llm_delay, args.retry_share, args.timeout))
    ok = (result["ack_ms"]["p99"] <= 100 and result["lost"] == 0 and result["duplicates"] == 0
          and result["non_200"] == 0)
    result["meets_targets"] = ok
    path = write_result("slack_bench", result)
    print_table(f"Slack bot: {args.questions} concurrent mentions, LLM delay {args.llm_delay} s", [
        ("HTTP requests (message + app_mention + retries)", str(result["http_requests"])),
        ("non-200 responses", str(result["non_200"])),
        ("ack latency p50 / p99 / max", "{p50:.1f} / {p99:.1f} / {max:.1f} ms".format(**result["ack_ms"])),
        ("  same burst, do-nothing server p50 / p99",
         "{p50:.1f} / {p99:.1f} ms".format(**result["ack_floor_ms"])),
        ("  bot's own handler time p50 / p99",
         "{p50:.2f} / {p99:.2f} ms".format(**result["ack_server_ms"])),
        ("first text visible p50", f"{result['first_text_s']['p50']:.2f} s"),
        ("final reply p50 / p95 / max",
         "{p50:.2f} / {p95:.2f} / {max:.2f} s".format(**result["final_reply_s"])),
        ("replies lost", str(result["lost"])),
        ("duplicate replies", str(result["duplicates"])),
        ("LLM requests", str(result["llm_requests"])),
        ("Slack API calls", str(result["slack_calls"])),
        ("targets (ack p99 <= 100 ms, lost 0, dup 0)", "met" if ok else "MISSED"),
    ])
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

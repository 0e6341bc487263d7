"""The aiohttp server around the bolt app: ``POST /slack/events`` and ``GET /healthz``.

Every request's signature is verified on its raw bytes before anything parses it; timestamps
more than five minutes off (401), replays of a request already taken (401) and bodies that do not
parse (400) are refused here. Events API callbacks are acknowledged as soon as they pass, before
bolt runs them (see :func:`build_web_app`). Socket Mode uses the same bolt app without this server.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from redis.exceptions import RedisError
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body

from bot.slack.app import SlackBot
from bot.state.redis import RedisGuard

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
# Slack accepts a timestamp up to five minutes off either way, so a signed request can be
# replayed for ten minutes after it was made: its signature is remembered that long.
SIGNATURE_WINDOW_S = 5 * 60
REPLAY_WINDOW_S = 2 * SIGNATURE_WINDOW_S + 10
# Signatures remembered in process (for a Redis outage): ten minutes at 80 requests a second.
REPLAY_MEMORY = 50_000
# /healthz waits this long for Redis's PONG before it says "down".
HEALTH_PING_S = 0.5


def build_web_app(app: AsyncApp, bot: SlackBot) -> web.Application:
    """The aiohttp application: Slack's events endpoint and a health check.

    Every request is checked here first: the signature and the timestamp, on the raw bytes
    (401); then that the body is UTF-8 and parses into a payload of the shape Slack sends (400);
    then that it is not a replay of a request already taken (401). Only then does bolt get it,
    so no input reaches a parser unverified or ends in a 500. Events API callbacks are then acknowledged before
    bolt runs: the 200 goes back at once and bolt (which verifies the request again) dispatches
    the event in the background. Everything else (slash commands and button clicks, whose
    response may carry a message; URL verification) goes through bolt before the response.
    """
    secret = bot.settings.slack.signing_secret
    key = secret.get_secret_value().encode() if secret and secret.get_secret_value() else None
    replays = ReplayMemory(bot.guard)
    gate = AcksFirst()

    async def events(request: web.Request) -> web.Response:
        gate.request_arrived()
        raw = await request.read()
        headers = request.headers
        signature = headers.get("X-Slack-Signature", "")
        if key is None or not _signed(key, raw, headers.get("X-Slack-Request-Timestamp"),
                                      signature):
            logger.warning("Rejected a request with a bad or stale Slack signature from %s "
                           "(check LOREBOT_SLACK__SIGNING_SECRET and the clock)", request.remote)
            return _refuse(401, "invalid request")
        try:
            text = raw.decode("utf-8")
            body = parse_body(text, headers.get("Content-Type"))
        except (UnicodeDecodeError, ValueError) as exc:
            logger.warning("Rejected a signed request from %s whose body does not parse (%s)",
                           request.remote, type(exc).__name__)
            return _refuse(400, "malformed body")
        if (problem := malformed(body)) is not None:
            logger.warning("Rejected a signed request from %s: %s", request.remote, problem)
            return _refuse(400, "malformed body")
        is_event = body.get("type") == "event_callback"
        retry = headers.get("X-Slack-Retry-Num")
        # Slack re-signs its event retries, so a signature seen twice is a replay. The retry
        # number is part of the key for events only (it is not signed): a forged one then gets
        # an event through to the event-id dedupe, never a command or a click through twice.
        seen = f"{signature}#{retry}" if is_event and retry else signature
        if not await replays.first_time(seen):
            logger.warning("Refused a replayed Slack request from %s (same signature seen "
                           "within the last %d s)", request.remote, REPLAY_WINDOW_S)
            return _refuse(401, "replayed request")
        try:
            bolt_request = AsyncBoltRequest(body=text, query=request.query_string,
                                            headers=dict(headers))
        except Exception as exc:  # noqa: BLE001 - a payload bolt cannot read is the sender's fault
            logger.warning("Rejected a signed request bolt cannot read (%s: %s)",
                           type(exc).__name__, str(exc)[:200])
            return _refuse(400, "malformed body")
        if is_event:
            if retry:
                # Harmless (the event is claimed once), but frequent retries mean slow acks.
                logger.info("Slack retried an event (attempt %s, %s)", retry,
                            headers.get("X-Slack-Retry-Reason", "no reason given"))
            bot.spawn(_dispatch(app, bolt_request, gate), name="slack event")
            return web.Response(status=200)
        response = await app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "redis": "up" if await redis_answers(bot.guard) else "down",
             "answering": bot.busy}
        )

    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, events)
    web_app.router.add_get(HEALTH_PATH, health)
    return web_app


def _signed(secret: bytes, raw: bytes, timestamp: str | None, signature: str) -> bool:
    """Whether ``raw`` carries Slack's v0 signature, made within the last five minutes.

    Computed here on the bytes as received (slack_sdk's verifier decodes them first, and raises
    on a timestamp that is not a number); only ASCII digits count as a timestamp.
    """
    if not timestamp or not signature or not signature.isascii():
        return False
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW_S:
        return False
    base = b"v0:" + timestamp.encode() + b":" + raw
    expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# The parts of a payload bolt's middleware and lorebot's listeners read, with the JSON type
# Slack gives them: a signed payload of another shape is refused rather than left to fail deep
# inside bolt (a 500, or a traceback for an event acknowledged already).
_OBJECTS = ("event", "user", "team", "channel", "container", "message", "view", "enterprise",
            "state", "assistant_thread")
_LISTS = ("actions", "authorizations")
_EVENT_STRINGS = ("type", "subtype", "channel", "user", "text", "ts", "thread_ts", "event_ts",
                  "team", "channel_type", "bot_id", "tab")


def malformed(body: object) -> str | None:
    """Why a parsed payload is not one Slack would send (None: it is)."""
    if not isinstance(body, dict):
        return "the body is not an object"
    if not isinstance(body.get("type", ""), str):
        return "'type' is not a string"
    for key in _OBJECTS:
        if body.get(key) is not None and not isinstance(body[key], dict):  # null: Slack's "none"
            return f"'{key}' is not an object"
    for key in _LISTS:
        if body.get(key) is not None and not (isinstance(body[key], list)
                                and all(isinstance(item, dict) for item in body[key])):
            return f"'{key}' is not a list of objects"
    event = body.get("event") or {}
    for key in _EVENT_STRINGS:
        if key in event and event[key] is not None and not isinstance(event[key], str):
            return f"the event's '{key}' is not a string"
    if body.get("type") == "event_callback" and not isinstance(event.get("type"), str):
        return "an event callback without an event type"
    if "command" in body and not all(isinstance(body.get(k), str) and body[k]
                                     for k in ("command", "user_id", "channel_id")):
        return "a slash command without its user or channel"
    if body.get("type") == "block_actions":
        if not isinstance((body.get("user") or {}).get("id"), str):
            return "an interaction without its user"
        for action in body.get("actions") or []:
            if not isinstance(action.get("action_id"), str) or not isinstance(
                    action.get("value", ""), str):
                return "an action without a string action_id or value"
    return None


def _refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


async def redis_answers(guard: RedisGuard, timeout_s: float = HEALTH_PING_S) -> bool:
    """Ask Redis now (the guard's flag only changes when a store next fails or succeeds)."""
    try:
        return bool(await asyncio.wait_for(guard.client.ping(), timeout_s))
    except (asyncio.TimeoutError, RedisError, OSError):
        return False


class ReplayMemory:
    """The signatures of the requests taken in the last :data:`REPLAY_WINDOW_S` seconds.

    In Redis (``SET NX`` with the window as TTL), so that every replica refuses a replay, and
    in a bounded in-process memory as well: that memory alone decides while Redis is down, and
    it still catches a replay of a request taken during an outage once Redis is back. When the
    memory is full the oldest signature is forgotten first (it expires first anyway).
    """

    def __init__(self, guard: RedisGuard, *, window_s: float = REPLAY_WINDOW_S,
                 max_local: int = REPLAY_MEMORY) -> None:
        self.guard = guard
        self.window_s = window_s
        self.max_local = max_local
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> expiry (monotonic)

    def _local_first_time(self, key: str) -> bool:
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now + self.window_s
        while len(self._seen) > self.max_local:
            self._seen.popitem(last=False)
        return True

    async def first_time(self, key: str) -> bool:
        """True the first time ``key`` is seen within the window, False for a replay."""
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        local = self._local_first_time(digest)

        async def op(client) -> bool:
            return bool(await client.set(self.guard.key("replay", digest), "1", nx=True,
                                         ex=int(self.window_s)))

        async def fallback() -> bool:
            return True  # the local memory decides

        return await self.guard.run("replay check", op, fallback) and local


class AcksFirst:
    """Holds background work back while requests keep arriving, so that in a burst every
    request is acknowledged before the event loop turns to answering (one event loop does both,
    and Slack retries whatever it has not seen acknowledged). Work waits until no request came
    for ``quiet_s``, at most ``max_wait_s``: a few milliseconds on an answer that takes seconds.
    """

    def __init__(self, quiet_s: float = 0.005, max_wait_s: float = 0.25) -> None:
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._last = 0.0

    def request_arrived(self) -> None:
        self._last = time.monotonic()

    async def wait(self) -> None:
        deadline = time.monotonic() + self.max_wait_s
        while (now := time.monotonic()) < deadline:
            idle = now - self._last
            if idle >= self.quiet_s:
                return
            await asyncio.sleep(self.quiet_s - idle)


async def _dispatch(app: AsyncApp, request: AsyncBoltRequest, gate: AcksFirst) -> None:
    await gate.wait()
    response = await app.async_dispatch(request)
    if response.status != 200:
        logger.warning("Slack event not handled: bolt answered %s", response.status)


class SlackHttpServer:
    """Serves the app over HTTP on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(self, app: AsyncApp, bot: SlackBot, *, middlewares: Sequence = ()) -> None:
        self.bot = bot
        web_app = build_web_app(app, bot)
        web_app.middlewares.extend(middlewares)  # e.g. metrics; aiohttp @web.middleware style
        self._runner = web.AppRunner(web_app, handle_signals=False, access_log=None)
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self, drain_s: float = 30.0) -> None:
        """Stop taking requests, then let the answers in flight finish."""
        await self._runner.cleanup()
        await self.bot.drain(drain_s)

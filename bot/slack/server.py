"""The aiohttp server around the bolt app: ``POST /slack/events`` and ``GET /healthz``.

Bolt verifies every request's signature and rejects timestamps more than five minutes off (401).
Events API callbacks are acknowledged as soon as their signature checks out, before bolt runs
them (see :func:`build_web_app`). Socket Mode uses the same bolt app without this server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def build_web_app(app: AsyncApp, bot: SlackBot) -> web.Application:
    """The aiohttp application: Slack's events endpoint and a health check.

    Events API callbacks whose signature checks out are acknowledged before bolt runs: the
    200 goes back at once and bolt (which verifies the request again) dispatches the event in
    the background. Everything else (slash commands and button clicks, whose response may carry
    a message; URL verification; any request that fails the check, which bolt answers with 401)
    goes through bolt before the response.
    """
    secret = bot.settings.slack.signing_secret
    verifier = SignatureVerifier(secret.get_secret_value()) if secret else None
    gate = AcksFirst()

    async def events(request: web.Request) -> web.Response:
        gate.request_arrived()
        body = await request.text()
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string,
                                        headers=dict(request.headers))
        if verifier is not None and _is_event_callback(body) and verifier.is_valid(
            body, request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
        ):
            if retry := request.headers.get("X-Slack-Retry-Num"):
                # Harmless (the event is claimed once), but frequent retries mean slow acks.
                logger.info("Slack retried an event (attempt %s, %s)", retry,
                            request.headers.get("X-Slack-Retry-Reason", "no reason given"))
            bot.spawn(_dispatch(app, bolt_request, gate), name="slack event")
            return web.Response(status=200)
        response = await app.async_dispatch(bolt_request)
        if response.status == 401:
            logger.warning("Rejected a request with a bad or stale Slack signature from %s "
                           "(check LOREBOT_SLACK__SIGNING_SECRET and the clock)", request.remote)
        return await to_aiohttp_response(response)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "redis": "up" if bot.guard.available else "down", "answering": bot.busy}
        )

    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, events)
    web_app.router.add_get(HEALTH_PATH, health)
    return web_app


def _is_event_callback(body: str) -> bool:
    if '"event_callback"' not in body:  # cheap: most requests are decided here
        return False
    try:
        return json.loads(body).get("type") == "event_callback"
    except (ValueError, AttributeError):
        return False


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

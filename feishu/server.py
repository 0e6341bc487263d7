"""The HTTP endpoint Feishu/Lark calls: ``POST /lark/events`` (event subscription and card
callbacks, one URL for both) and ``GET /healthz``.

Every request goes through :class:`feishu.gate.Gate` on its raw bytes first (401 when it fails).
A message event is acknowledged at once and answered in the background; a card click waits for
its feedback to be stored, so the toast can say whether it was (Feishu waits three seconds).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from feishu.bot import LarkBot
from feishu.feedback import handle_click
from feishu.gate import Delivery, Gate
from feishu.messages import handle_message

logger = logging.getLogger(__name__)

EVENTS_PATH = "/lark/events"
HEALTH_PATH = "/healthz"
# The most a callback may carry (Feishu's are a few KB): larger ones are refused unread.
MAX_BODY = 1 << 20
# A card click is answered within Feishu's three seconds even if storing the feedback hangs.
CLICK_TIMEOUT_S = 2.5


async def dispatch(bot: LarkBot, delivery: Delivery) -> dict | None:
    """Act on one opened delivery: a message is answered in the background; a click returns its
    callback response."""
    if delivery.kind == "message":
        # Claiming (Redis) happens in the background too: the acknowledgement never waits on it.
        bot.spawn(_guarded(handle_message(bot, delivery.event_id, delivery.event or {})),
                  name=f"lark event {delivery.event_id}")
        return None
    try:
        return await asyncio.wait_for(handle_click(bot, delivery.card), CLICK_TIMEOUT_S)
    except TimeoutError:
        logger.error("Storing a feedback click took over %.1f s", CLICK_TIMEOUT_S)
        return {"toast": {"type": "error", "content": "Please try again in a moment."}}


async def _guarded(coro) -> None:
    try:
        await coro
    except Exception:  # noqa: BLE001 - one bad event must not go unnoticed, nor stop others
        logger.exception("Handling a Feishu/Lark message event failed")


def build_web_app(bot: LarkBot, gate: Gate) -> web.Application:
    async def events(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_BODY:
            return web.json_response({"msg": "too large"}, status=413)
        raw = await request.read()
        opened = gate.open(raw, request.headers, request.path)
        if opened.status != 200 or opened.delivery is None:
            return web.Response(status=opened.status, body=opened.body,
                                content_type="application/json")
        result = await dispatch(bot, opened.delivery)
        return web.json_response(result if result is not None else {"msg": "success"})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "answering": bot.busy})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(EVENTS_PATH, events)
    app.router.add_get(HEALTH_PATH, health)
    return app


class LarkHttpServer:
    def __init__(self, bot: LarkBot, gate: Gate) -> None:
        self.bot = bot
        self.runner = web.AppRunner(build_web_app(bot, gate), access_log=None)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    async def stop(self, drain_s: float = 20.0) -> None:
        await self.bot.drain(drain_s)
        await self.runner.cleanup()

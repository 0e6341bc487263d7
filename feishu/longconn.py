"""Events over the SDK's long-connection WebSocket client (``lark.ws.Client``): no public URL
needed, like Slack's Socket Mode. Feishu authenticates the connection with the app secret, and
its events arrive unencrypted inside it, so no verification token or encrypt key is needed.

The SDK client runs an event loop of its own and blocks in it, and it keeps that loop in a module
global taken when the module is first imported (in a running bot: the bot's own loop, which it
cannot block on). So it runs in a thread of its own with a fresh loop put into that global, and
each delivery is handed to the bot's loop: a message is acknowledged once it is handed over (the
answer runs there), a card click waits for its toast, within Feishu's three seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import lark_oapi as lark
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse

from feishu.bot import LarkBot
from feishu.gate import Delivery, Gate
from feishu.server import CLICK_TIMEOUT_S, dispatch

logger = logging.getLogger(__name__)

# How long a message waits to be handed to the bot's loop before the SDK reports a failure.
HANDOVER_S = 2.0


class LongConnection:
    """``await start()`` connects (raises when Feishu refuses the credentials); ``stop()``."""

    def __init__(self, bot: LarkBot) -> None:
        self.bot = bot
        self.gate = Gate(bot.settings.lark, elsewhere=self._deliver, require_credentials=False)
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: lark.ws.Client | None = None
        self._thread: threading.Thread | None = None
        self._started: concurrent.futures.Future = concurrent.futures.Future()

    async def start(self, timeout_s: float = 30.0) -> None:
        self._main = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="lark-ws", daemon=True)
        self._thread.start()
        await asyncio.wait_for(asyncio.wrap_future(self._started), timeout_s)

    def _run(self) -> None:
        import lark_oapi.ws.client as ws_client

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ws_client.loop = loop  # see the module docstring
        self._loop = loop
        s = self.bot.settings.lark
        self._client = lark.ws.Client(
            s.app_id or "", s.app_secret.get_secret_value() if s.app_secret else "",
            event_handler=self.gate.handler, domain=s.base_url, log_level=lark.LogLevel.WARNING)
        try:
            loop.run_until_complete(self._client._connect())
        except Exception as exc:  # noqa: BLE001 - told to start(), which raises it
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        # What the SDK's start() does after connecting: ping, and run until stopped.
        loop.create_task(self._client._ping_loop())
        try:
            loop.run_forever()
        finally:
            # The SDK's own tasks (ping, receive, its cache's clean-up) end here, not at exit.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _deliver(self, delivery: Delivery):
        """Called by the SDK in its thread for each event."""
        if self._main is None or self._main.is_closed():
            raise RuntimeError("the bot is not running")
        handed = asyncio.run_coroutine_threadsafe(dispatch(self.bot, delivery), self._main)
        if delivery.kind == "message":
            handed.result(HANDOVER_S)  # raises when the bot's loop does not take it: Feishu retries
            return None
        result = handed.result(CLICK_TIMEOUT_S + 0.3)
        return P2CardActionTriggerResponse(result or {})

    async def stop(self, drain_s: float = 20.0) -> None:
        """Close the connection (no reconnecting), then let the answers in flight finish."""
        if self._loop is not None and self._client is not None and not self._loop.is_closed():
            self._client._auto_reconnect = False
            try:
                closing = asyncio.run_coroutine_threadsafe(self._client._disconnect(), self._loop)
                await asyncio.wait_for(asyncio.wrap_future(closing), 5.0)
            except Exception as exc:  # noqa: BLE001 - shutting down either way
                logger.warning("Closing the Feishu/Lark long connection failed: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
        await self.bot.drain(drain_s)

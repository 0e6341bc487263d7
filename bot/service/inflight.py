"""The answers a bot process has in flight, and its bounded shutdown: one piece every
platform's bot uses, so Slack and Feishu/Lark drain the same way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class InFlight:
    """Background tasks kept until done (asyncio holds only weak references to them)."""

    def __init__(self) -> None:
        self.stopping = False  # set when shutdown begins: new questions get a "restarting" reply
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        """Run ``coro`` in the background, keeping a reference until it is done."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> None:
        """Take no new questions, let the tasks in flight finish for at most ``timeout_s``,
        then cancel the rest: each cancelled answer tells its asker to ask again (the
        platform's reply code), so no question is left without a reply."""
        self.stopping = True
        if not self._tasks:
            return
        logger.info("Waiting for %d answers in flight", len(self._tasks))
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        if pending:
            logger.warning("%d answers unfinished after %.0f s: telling their askers to ask again",
                           len(pending), timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=10.0)

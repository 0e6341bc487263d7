"""Shared machinery for running models off the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# One thread for all model work: torch already uses every core for one batch, so a second
# concurrent batch only thrashes. The bound keeps CPU-bound work off the event loop and ordered.
_MODEL_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorebot-model")


async def run_model(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run a CPU-bound model call on the model thread and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_MODEL_EXECUTOR, functools.partial(fn, *args, **kwargs))

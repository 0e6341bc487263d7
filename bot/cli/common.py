"""Pieces the command modules share: mode names, the demo's sample question, waiting for a
stop signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

MODES = ("bm25", "dense", "hybrid", "rerank")
SAMPLE_QUESTION = "How do I add my own documents to lorebot?"


async def until_stopped() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    print("Stopping: finishing the answers in flight …", file=sys.stderr)

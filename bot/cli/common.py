"""Pieces the command modules share: mode names, the demo's sample question, waiting for a
stop signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

MODES = ("bm25", "dense", "hybrid", "rerank")
SAMPLE_QUESTION = "How do I add my own documents to lorebot?"


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more (`-k 0` is refused, with the reason)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


# One stop event per event loop: `lorebot run` serves Slack and Feishu/Lark at once, and a
# second signal handler would replace the first, leaving one platform running after SIGTERM.
_STOPS: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


async def until_stopped() -> None:
    """Block until SIGINT or SIGTERM; every caller in one event loop wakes on the same signal."""
    loop = asyncio.get_running_loop()
    stop = _STOPS.get(loop)
    owner = stop is None
    if owner:
        stop = _STOPS[loop] = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if owner:
            _STOPS.pop(loop, None)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(sig)
    if owner:
        print("Stopping: finishing the answers in flight …", file=sys.stderr)

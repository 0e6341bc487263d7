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

"""How a training run reports: to a worker's callbacks (a job's Slack message) or, from the CLI,
to stderr and a progress bar on a terminal; and the thread training runs on."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor


def say(args, text: str) -> None:
    if args.say is not None:
        args.say(text)


def report(args, phase: str, done: int, total: int | None) -> None:
    if args.progress is not None:
        args.progress(phase, done, total)


# Training runs on a thread of its own, not on the model thread (search.models_runtime): one
# training call holds its thread for minutes, and a bot running jobs in-process must keep
# embedding questions meanwhile (slower while both compete for the cores, but not stalled).
_TRAIN_EXECUTOR: ThreadPoolExecutor | None = None


async def run_training(args, label, fn, *fn_args, **fn_kwargs):
    """``fn(*fn_args, progress=…, **fn_kwargs)`` on the training thread, its steps reported as
    the phase "training"."""
    import functools

    global _TRAIN_EXECUTOR
    if _TRAIN_EXECUTOR is None:
        _TRAIN_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorebot-train")
    loop = asyncio.get_running_loop()

    def start(tick):
        call = functools.partial(fn, *fn_args, **fn_kwargs,
                                 progress=lambda step, total, _loss: tick(step, total))
        return loop.run_in_executor(_TRAIN_EXECUTOR, call)

    return await with_progress(args, "training", label, None, start)


async def with_progress(args, phase, label, total, start):
    """Run ``start(tick)``, ``tick(done, total)``: reported as ``phase`` to ``args.progress``
    (a worker), else shown as a bar labelled ``label`` on a terminal."""
    if (report := getattr(args, "progress", None)) is not None:
        report(phase, 0, total)
        return await start(lambda done, n=None: report(phase, done, n or total))
    if not sys.stderr.isatty():
        return await start(lambda *_: None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=total)

        def tick(done, n=None) -> None:
            bar.update(task, completed=done, total=n or total)

        return await start(tick)

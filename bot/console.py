"""What every command shares with the code it runs: the error a user can fix, the exit codes,
and JSON output. Below the CLI, so training and jobs can raise :class:`CliError` without
importing the command line. Imports nothing of lorebot."""

from __future__ import annotations

import json
from typing import Self

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2
# A bug in lorebot (an unexpected exception), told apart from the user's mistakes.
EXIT_CRASH = 3
PROGRESS_EVERY_S = 10.0  # not on a terminal, long runs print one progress line this often


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def print_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def print_error(message: str, *, as_json: bool = False) -> None:
    """One line on stderr, ``lorebot: error: …``; with ``as_json`` also ``{"error": …}`` on stdout
    (a script reading JSON gets JSON even when the command fails)."""
    import sys

    for line in message.splitlines() or [""]:
        print(f"lorebot: error: {line}", file=sys.stderr)
    if as_json:
        print_json({"error": message})


def about(seconds: float) -> str:
    """A rough duration for people: "about 40 s", "about 12 min", "about 1.5 h"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def interrupt_notice(index):
    """An async context manager around an index run: interrupted (Ctrl-C), it says whether the
    index was left unchanged, from the index's version when it has one (a run is one
    transaction, so it is, unless the interrupt came during the commit), and re-raises."""
    import asyncio
    import contextlib
    import sys

    async def version():
        if (get := getattr(index, "version", None)) is None:
            return None
        try:
            return await get()
        except Exception:  # noqa: BLE001 - only used to word a message
            return None

    @contextlib.asynccontextmanager
    async def notice():
        before = await version()
        try:
            yield
        except (asyncio.CancelledError, KeyboardInterrupt):
            if before is not None and await version() != before:
                print("Interrupted while the index was being written; the run was committed.",
                      file=sys.stderr)
            else:
                print("Interrupted: nothing was written, the index is unchanged.", file=sys.stderr)
            raise

    return notice()


class IndexProgress:
    """Follows an index run as it does the work: documents read (the indexer's ``on_progress``)
    and chunks embedded (:meth:`follow` wraps the indexer's embedder), with the embedding rate
    and an estimate of the time left. On a terminal one live line; elsewhere (logs, CI) a plain
    line every ``every_s`` seconds and one at the end."""

    def __init__(self, label: str, total: int | None, *, tty: bool, every_s: float | None = None,
                 stream=None, clock=None) -> None:
        import sys
        import time

        self.label, self.total, self.tty = label, total, tty
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.stream = stream or sys.stderr
        self.clock = clock or time.monotonic
        self.read = 0  # documents read (loaded, compared, chunked)
        self.started = 0  # chunks handed to the embedder
        self.read_at_start = 0  # documents read when the last embedding batch started
        self.embedded = 0
        # The first batch also loads the model (seconds to a minute): the rate is measured
        # from its end, so the load does not count as slow embedding.
        self.first_batch: tuple[float, int] | None = None  # (when it ended, its chunks)
        self._printed = self.clock()
        self._lines = 0  # lines printed (not on a terminal)
        self._bar = self._task = None

    # -- callbacks ------------------------------------------------------------------------------

    def on_progress(self, done: int, total: int | None = None) -> None:
        self.read = done
        if total is not None:
            self.total = total
        self._show()

    def batch_started(self, n: int) -> None:
        self.started += n
        self.read_at_start = self.read
        self._show()

    def batch_done(self, n: int) -> None:
        self.embedded += n
        if self.first_batch is None:
            self.first_batch = (self.clock(), self.embedded)
        self._show()

    def follow(self, indexer):
        """A context manager: while it is open, the indexer's embedder reports its batches here."""
        import contextlib

        target = getattr(indexer, "inner", indexer)  # bot.runtime.reload.LiveIndexer wraps it

        @contextlib.contextmanager
        def following():
            inner = target.embedder
            target.embedder = _ReportingEmbedder(inner, self)
            try:
                yield self
            finally:
                target.embedder = inner

        return following()

    # -- what is shown --------------------------------------------------------------------------

    def rate(self) -> float | None:
        """Chunks per second since the first batch ended; None until a second one has."""
        if self.first_batch is None:
            return None
        ended, chunks = self.first_batch
        seconds = self.clock() - ended
        return (self.embedded - chunks) / seconds if seconds > 0 and self.embedded > chunks else None

    def seconds_left(self) -> float | None:
        rate = self.rate()
        if rate is None or not self.total or not self.read_at_start:
            return None
        # Chunks per document so far, times the documents not read yet, plus the chunks queued.
        expected = self.started / self.read_at_start * self.total
        return max(0.0, expected - self.embedded) / rate

    def status(self) -> str:
        total = f"/{self.total}" if self.total else ""
        parts = [f"{self.label}: {self.read}{total} documents read",
                 f"{self.embedded} chunks embedded"]
        if self.started and self.first_batch is None:
            parts[-1] += " (the first batch loads the model)"
        if (rate := self.rate()) is not None:
            parts.append(f"{rate:.0f} chunks/s")
        if (left := self.seconds_left()) is not None and (self.embedded < self.started
                                                          or self.read < (self.total or 0)):
            parts.append(f"{about(left)} left")
        return ", ".join(parts)

    def _show(self, force: bool = False) -> None:
        if self._bar is not None:
            self._bar.update(self._task, status=self.status())
        elif not self.tty and (force or self.clock() - self._printed >= self.every_s):
            self._printed = self.clock()
            self._lines += 1
            print(self.status(), file=self.stream, flush=True)

    def __enter__(self) -> Self:
        if self.tty:
            from rich.progress import (
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.fields[status]}"),
                                 TimeElapsedColumn(), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None, status=self.status())
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.__exit__(*exc)
        elif exc[0] is None and self._lines:  # a long run ends with where it got to
            self._show(force=True)


class _ReportingEmbedder:
    """An embedder that tells an :class:`IndexProgress` about every batch of documents."""

    def __init__(self, inner, progress: IndexProgress) -> None:
        self.inner, self._progress = inner, progress

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def embed_documents(self, texts):
        self._progress.batch_started(len(texts))
        vectors = await self.inner.embed_documents(texts)
        self._progress.batch_done(len(texts))
        return vectors

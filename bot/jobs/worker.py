"""The worker: takes jobs off the queue, runs them one at a time holding the job's lock, renews
its heartbeat, recovers the jobs of dead workers and schedules refreshes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from bot.jobs.queue import Job, JobError, JobQueue, Progress, new_worker_id
from bot.sources.registry import Source, SourceRegistry, SourceRegistryError

logger = logging.getLogger(__name__)


class Notifier:
    """Told about a job's start, progress and end (Slack, or nothing)."""

    async def update(self, job: Job) -> None:  # pragma: no cover - the null notifier
        return None


RunJob = Callable[[Source, Progress], Awaitable[dict]]
RunTraining = Callable[[Job, Progress], Awaitable[dict]]


class Worker:
    """Takes jobs off the queue and runs them, one at a time, holding the job's lock.
    ``run_training`` runs training jobs (None: this worker fails them, saying so)."""

    def __init__(self, queue: JobQueue, registry: SourceRegistry, run_job: RunJob, *,
                 notifier: Notifier | None = None, worker_id: str | None = None,
                 poll_s: float = 0.2, progress_interval_s: float = 2.0,
                 schedule_every_s: float = 30.0, max_backoff_s: float = 30.0,
                 run_training: RunTraining | None = None) -> None:
        self.queue = queue
        self.registry = registry
        self.run_job = run_job
        self.run_training = run_training
        self.notifier = notifier or Notifier()
        self.id = worker_id or new_worker_id()
        self.poll_s = poll_s
        self.progress_interval_s = progress_interval_s
        self.schedule_every_s = schedule_every_s
        self.max_backoff_s = max_backoff_s

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (a job in flight is finished first).

        While the queue cannot be reached (Redis down), the worker waits longer after each
        failed try, doubling from ``poll_s`` up to ``max_backoff_s``, and logs the outage once
        when it starts and once when it ends, not on every try.
        """
        logger.info("Worker %s started", self.id)
        last_recovery = last_schedule = 0.0
        down_since: float | None = None
        failures = 0
        while not stop.is_set():
            try:
                await self.queue.heartbeat(self.id)
                if time.monotonic() - last_recovery > 1.0:
                    await self.queue.recover()
                    last_recovery = time.monotonic()
                if time.monotonic() - last_schedule > self.schedule_every_s:
                    await self.schedule()
                    last_schedule = time.monotonic()
                job = await self.queue.claim(self.id)
            except Exception as exc:  # noqa: BLE001 - Redis down: keep trying, do not die
                failures += 1
                if down_since is None:
                    down_since = time.monotonic()
                    logger.error("Worker %s cannot reach the queue (%s: %s); retrying with "
                                 "backoff up to %.0f s", self.id, type(exc).__name__,
                                 " ".join(str(exc).split())[:300], self.max_backoff_s)
                    logger.debug("Queue failure", exc_info=True)
                await self._sleep(stop, self.backoff(failures))
                continue
            if down_since is not None:
                logger.warning("Worker %s reaches the queue again after %.0f s", self.id,
                               time.monotonic() - down_since)
                down_since, failures = None, 0
            if job is None:
                await self._sleep(stop, self.poll_s)
                continue
            try:
                await self.process(job)
            except Exception as exc:  # noqa: BLE001 - Redis gone while saving the job's end
                # The job's lock expires and recovery runs it again; the worker lives on.
                failures += 1
                down_since = time.monotonic()
                logger.error("Worker %s could not record the end of job %s (%s: %s); it will "
                             "be recovered", self.id, job.id, type(exc).__name__,
                             " ".join(str(exc).split())[:300])
                await self._sleep(stop, self.backoff(failures))

    def backoff(self, failures: int) -> float:
        """The wait after the ``failures``-th failed try in a row: exponential, capped."""
        return min(self.max_backoff_s, self.poll_s * 2 ** min(failures, 30))

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def schedule(self) -> list[str]:
        """Queue the sources whose refresh interval has passed since their last run (every
        worker checks; the queue's one-job-per-source rule keeps it to one job)."""
        queued = []
        now = time.time()
        for source in await self.registry.list():
            if source.refresh_s and (source.last_run or source.created_at) + source.refresh_s <= now:
                _job, created = await self.queue.enqueue(source.name, requested_by="schedule")
                if created:
                    queued.append(source.name)
        if queued:
            logger.info("Scheduled refresh of %s", ", ".join(queued))
        return queued

    async def process(self, job: Job) -> Job:
        """Run one claimed job under its lock; returns the final job record."""
        lock = job.lock_name
        if not await self.queue.lock(lock, self.id):
            # Another worker runs this source (or a training job) right now: retry later.
            await self.queue.put_back(self.id, job)
            await asyncio.sleep(self.poll_s)
            return job
        job = replace(job, state="running", started=time.time(), worker=self.id,
                      attempts=job.attempts + 1, error=None)
        await self.queue.save(job)
        await self._notify(job)
        state = {"job": job, "dirty": False}

        def progress(phase: str, done: int, total: int | None) -> None:
            state["job"] = replace(state["job"], phase=phase, done=done, total=total)
            state["dirty"] = True

        keeper = asyncio.create_task(self._keep_alive(lock, state))
        try:
            summary = await self._run(job, progress)
            job = replace(state["job"], state="done", summary=summary, finished=time.time())
        except Exception as exc:  # noqa: BLE001 - a failed job is reported, the worker goes on
            if isinstance(exc, (SourceRegistryError, JobError)):
                reason = str(exc)
                logger.warning("Job %s (%s) failed: %s", job.id, job.source, reason)
            else:
                reason = f"{type(exc).__name__}: {exc}"
                logger.exception("Job %s (%s) failed", job.id, job.source)
            # One line for Slack (the traceback is in the log).
            reason = " ".join(reason.split())[:500]
            job = replace(state["job"], state="failed", error=reason, finished=time.time())
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        try:
            if job.kind == "reindex":
                await self.registry.record_run(job.source, job.summary, job.error)
            await self.queue.finish(self.id, job)
        finally:
            await self.queue.unlock(lock, self.id)
        logger.info("Job %s (%s) %s", job.id, job.source, job.state)
        await self._notify(job)
        return job

    async def _run(self, job: Job, progress: Progress) -> dict:
        if job.kind == "finetune":
            if self.run_training is None:
                raise JobError("this worker cannot run training jobs")
            return await self.run_training(job, progress)
        if job.kind != "reindex":
            raise JobError(f"unknown job kind {job.kind!r}; is this worker older than the bot?")
        return await self.run_job(await self.registry.require(job.source), progress)

    async def _keep_alive(self, lock: str, state: dict) -> None:
        renew_every = self.queue.lock_ttl_ms / 3000
        last_renew = last_progress = time.monotonic()
        failing = False  # logged once when renewing starts failing and once when it recovers
        while True:
            await asyncio.sleep(min(renew_every, self.progress_interval_s, 0.5))
            now = time.monotonic()
            try:
                if now - last_renew >= renew_every:
                    await self.queue.renew(lock, self.id)
                    await self.queue.heartbeat(self.id)
                    last_renew = now
                if state["dirty"] and now - last_progress >= self.progress_interval_s:
                    state["dirty"] = False
                    last_progress = now
                    await self.queue.save(state["job"])
                    await self._notify(state["job"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat or update is not fatal
                if not failing:
                    failing = True
                    logger.warning("Worker %s: renewing the lock or saving progress failed "
                                   "(%s: %s); retrying", self.id, type(exc).__name__,
                                   " ".join(str(exc).split())[:300])
                continue
            if failing:
                failing = False
                logger.warning("Worker %s: renewing the lock works again", self.id)

    async def _notify(self, job: Job) -> None:
        try:
            await self.notifier.update(job)
        except Exception:  # noqa: BLE001 - Slack down must not fail the job
            logger.warning("Could not report job %s", job.id, exc_info=True)

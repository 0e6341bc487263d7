"""Reindex jobs: a small queue on Redis lists, a lock per source, and workers.

Keys (under the Redis key prefix)::

    jobs:queue               list of job ids waiting
    jobs:processing:<worker> list of job ids a worker has taken (at most one)
    jobs:alive:<worker>      heartbeat, expires after ``lock_ttl_s`` without renewal
    jobs:workers             set of worker ids ever seen (cleaned up on recovery)
    jobs:lock:<source>       the worker running a job of that source (one job per source)
    jobs:active:<source>     the queued or running job of that source (no duplicate jobs)
    jobs:lock:finetune:      the same two for training jobs (one at a time, whatever the
    jobs:active:finetune:    model kind; no source name has a colon)
    job:<id>                 the job record (JSON), kept a week
    jobs:recent              the latest job ids, newest first

A worker that dies mid-job stops renewing its heartbeat; the next worker to look moves its jobs
back to the queue (or fails them after ``max_attempts``). The index run is one transaction, so
the dead run left nothing visible and the retry starts clean.

A job is a reindex of a source (``kind="reindex"``) or the training of a retrieval model
(``kind="finetune"``, ``source`` the model kind, ``params`` the options; see bot.finetune_jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace

from bot.sources import WEB_TYPES, Source, SourceRegistry, SourceRegistryError

logger = logging.getLogger(__name__)

JOB_TTL_S = 7 * 24 * 3600
RECENT_JOBS = 50
_RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"""
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) else return 0 end"""

Progress = Callable[[str, int, int | None], None]
JOB_KINDS = ("reindex", "finetune")
TRAINING_LOCK = "finetune:"  # every training job's lock and active-job name


class JobError(Exception):
    """A job failed for a reason the requester can act on; reported as its message alone."""


@dataclass
class Job:
    """One reindex of one source, or one training run (``kind``)."""

    id: str
    source: str  # the source's name; for a training job, the model kind
    state: str = "queued"  # queued | running | done | failed
    requested_by: str | None = None
    channel: str | None = None
    message_ts: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    worker: str | None = None
    attempts: int = 0
    phase: str | None = None
    done: int = 0
    total: int | None = None
    summary: dict | None = None
    error: str | None = None
    kind: str = "reindex"  # reindex | finetune
    params: dict | None = None  # a training job's options (dataset, force, epochs, max_steps)

    @classmethod
    def from_json(cls, raw: str) -> Job:
        data = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @property
    def lock_name(self) -> str:
        """What the job holds while queued and running: its source, or the one training lock."""
        return TRAINING_LOCK if self.kind == "finetune" else self.source


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobQueue:
    """The job queue and locks on one Redis (``decode_responses=True`` client)."""

    def __init__(self, client, prefix: str = "lorebot:", *, lock_ttl_s: float = 30.0,
                 max_attempts: int = 3) -> None:
        self.client = client
        self.p = prefix
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.max_attempts = max_attempts

    def _k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    async def enqueue(self, source: str, *, requested_by: str | None = None,
                      channel: str | None = None, message_ts: str | None = None,
                      kind: str = "reindex", params: dict | None = None) -> tuple[Job, bool]:
        """Queue a reindex of ``source`` (or with ``kind="finetune"``, the training of the model
        kind ``source``); (job, True) or (the queued/running one, False).
        ``channel`` and ``message_ts``: the Slack message that shows the job's progress."""
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        job = Job(id=uuid.uuid4().hex[:12], source=source, requested_by=requested_by,
                  channel=channel, message_ts=message_ts, kind=kind, params=params)
        active = self._k("jobs", "active", job.lock_name)
        if not await self.client.set(active, job.id, nx=True):
            existing = await self.get(await self.client.get(active) or "")
            if existing is not None and existing.state in ("queued", "running"):
                return existing, False
            await self.client.set(active, job.id)  # a stale pointer: take it over
        await self.save(job)
        await self.client.lpush(self._k("jobs", "recent"), job.id)
        await self.client.ltrim(self._k("jobs", "recent"), 0, RECENT_JOBS - 1)
        await self.client.rpush(self._k("jobs", "queue"), job.id)
        return job, True

    async def get(self, job_id: str) -> Job | None:
        raw = await self.client.get(self._k("job", job_id)) if job_id else None
        return Job.from_json(raw) if raw else None

    async def save(self, job: Job) -> None:
        await self.client.set(self._k("job", job.id), job.to_json(), ex=JOB_TTL_S)

    async def recent(self, n: int = 10) -> list[Job]:
        ids = await self.client.lrange(self._k("jobs", "recent"), 0, n - 1)
        jobs = [await self.get(i) for i in ids]
        return [j for j in jobs if j is not None]

    async def queued_ids(self) -> list[str]:
        return await self.client.lrange(self._k("jobs", "queue"), 0, -1)

    async def claim(self, worker: str) -> Job | None:
        """Take the next job off the queue (non-blocking)."""
        job_id = await self.client.lmove(self._k("jobs", "queue"),
                                         self._k("jobs", "processing", worker), "LEFT", "RIGHT")
        if job_id is None:
            return None
        job = await self.get(job_id)
        if job is None:  # expired record: drop it
            await self.client.lrem(self._k("jobs", "processing", worker), 0, job_id)
        return job

    async def claim_id(self, worker: str, job_id: str) -> Job | None:
        """Take one particular job off the queue (the CLI runs the job it queued)."""
        if not await self.client.lrem(self._k("jobs", "queue"), 1, job_id):
            return None
        await self.client.rpush(self._k("jobs", "processing", worker), job_id)
        return await self.get(job_id)

    async def put_back(self, worker: str, job: Job) -> None:
        await self.client.lrem(self._k("jobs", "processing", worker), 0, job.id)
        await self.client.rpush(self._k("jobs", "queue"), job.id)

    async def heartbeat(self, worker: str) -> None:
        await self.client.sadd(self._k("jobs", "workers"), worker)
        await self.client.set(self._k("jobs", "alive", worker), str(time.time()),
                              px=self.lock_ttl_ms)

    async def lock(self, source: str, worker: str) -> bool:
        return bool(await self.client.set(self._k("jobs", "lock", source), worker, nx=True,
                                          px=self.lock_ttl_ms))

    async def lock_holder(self, source: str) -> str | None:
        return await self.client.get(self._k("jobs", "lock", source))

    async def renew(self, source: str, worker: str) -> bool:
        return bool(await self.client.eval(_RENEW, 1, self._k("jobs", "lock", source), worker,
                                           self.lock_ttl_ms))

    async def unlock(self, source: str, worker: str) -> None:
        await self.client.eval(_RELEASE, 1, self._k("jobs", "lock", source), worker)

    async def finish(self, worker: str, job: Job) -> None:
        await self.save(job)
        await self.client.lrem(self._k("jobs", "processing", worker), 0, job.id)
        await self.client.eval(_RELEASE, 1, self._k("jobs", "active", job.lock_name), job.id)

    async def recover(self) -> list[str]:
        """Requeue (or fail) the jobs of workers whose heartbeat expired; returns their ids."""
        moved = []
        for worker in await self.client.smembers(self._k("jobs", "workers")):
            if await self.client.exists(self._k("jobs", "alive", worker)):
                continue
            processing = self._k("jobs", "processing", worker)
            for job_id in await self.client.lrange(processing, 0, -1):
                job = await self.get(job_id)
                await self.client.lrem(processing, 0, job_id)
                if job is None:
                    continue
                if job.attempts >= self.max_attempts:
                    job = replace(job, state="failed", finished=time.time(),
                                  error=f"the worker died {job.attempts} times running this job")
                    await self.finish(worker, job)
                else:
                    logger.warning("Worker %s died running job %s (%s): requeued", worker,
                                   job.id, job.source)
                    await self.save(replace(job, state="queued", worker=None))
                    await self.client.lpush(self._k("jobs", "queue"), job_id)
                moved.append(job_id)
            await self.client.srem(self._k("jobs", "workers"), worker)
        return moved


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
                 schedule_every_s: float = 30.0,
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

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (a job in flight is finished first)."""
        logger.info("Worker %s started", self.id)
        last_recovery = last_schedule = 0.0
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
            except Exception:  # noqa: BLE001 - Redis down: keep trying, do not die
                logger.exception("Worker %s cannot reach the queue", self.id)
                job = None
            if job is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_s)
                continue
            await self.process(job)

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
            except Exception:  # noqa: BLE001 - a missed heartbeat or update is not fatal
                logger.warning("Worker %s: renewing or reporting failed", self.id, exc_info=True)

    async def _notify(self, job: Job) -> None:
        try:
            await self.notifier.update(job)
        except Exception:  # noqa: BLE001 - Slack down must not fail the job
            logger.warning("Could not report job %s", job.id, exc_info=True)


# -- running a source ---------------------------------------------------------------------------


def crawl_limits(settings):
    from search.web import CrawlLimits

    s = settings.sources
    return CrawlLimits(max_pages=s.crawl_max_pages, max_depth=s.crawl_max_depth,
                       concurrency=s.crawl_concurrency, timeout_s=s.fetch_timeout_s,
                       max_bytes=int(s.max_page_mb * 1024 * 1024), user_agent=s.user_agent)


async def index_source(services, source: Source, progress: Progress | None = None, *,
                       slack_client=None) -> dict:
    """Load a registered source and bring the index in line with it; returns the summary dict
    (the keys of ``lorebot index --json``)."""
    report = progress or (lambda *_: None)
    if source.type == "folder":
        from pathlib import Path

        from search.loaders import DEFAULT_EXCLUDES, discover, iter_documents

        files = discover([Path(source.location)], include=source.include or ("**/*",),
                         exclude=(*DEFAULT_EXCLUDES, *source.exclude))
        max_bytes = int(services.settings.search.max_file_mb * 1024 * 1024)
        items = iter_documents(files, source=source.name, max_bytes=max_bytes)
        total: int | None = len(files)
    elif source.type in WEB_TYPES:
        from search.web import crawl

        items = await crawl(source.name, source.location, source.type,
                            crawl_limits(services.settings),
                            on_progress=lambda d, t: report("fetching", d, t))
        total = len(items)
    elif source.type in ("slack_channel", "slack_files") and slack_client is None:
        raise SourceRegistryError(f"{source.type} sources cannot be indexed without a Slack bot "
                                  "token (set LOREBOT_SLACK__BOT_TOKEN)")
    elif source.type == "slack_channel":
        from bot.slack_source import load_channel

        items = await load_channel(slack_client, source.name, source.location,
                                   on_progress=lambda d, t: report("reading", d, t))
        total = len(items)
    elif source.type == "slack_files":
        from bot.slack_files import load_files

        s = services.settings
        items = await load_files(slack_client, source.name, source.location,
                                 max_bytes=int(s.search.max_file_mb * 1024 * 1024),
                                 timeout_s=s.sources.fetch_timeout_s,
                                 on_progress=lambda d, t: report("downloading", d, t))
        total = len(items)
    else:
        raise SourceRegistryError(f"{source.type} sources cannot be indexed yet")
    summary = await services.indexer.index_documents(
        source.name, items, total=total, on_progress=lambda d, t: report("indexing", d, t)
    )
    return summary.as_dict()


async def remove_source_documents(services, name: str) -> int:
    """Delete every indexed document of ``name`` in one transaction; returns how many."""
    summary = await services.indexer.index_documents(name, [], remove_missing=True)
    return summary.removed


async def wait_for(queue: JobQueue, job_id: str, timeout_s: float = 600.0) -> Job:
    """Poll until the job is done or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = await queue.get(job_id)
        if job is not None and job.state in ("done", "failed"):
            return job
        await asyncio.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish in {timeout_s:g} s")


# What a job's progress counts in each phase (index_source reports the phase).
PHASE_UNITS = {"fetching": "pages fetched", "reading": "threads read",
               "downloading": "files downloaded", "indexing": "documents done"}


def job_text(job: Job) -> str:
    """The Slack message that shows a job: queued, progress, then the summary or the error."""
    if job.kind == "finetune":
        from bot.finetune_jobs import training_text

        return training_text(job)
    who = (f" (requested by <@{job.requested_by}>)"
           if job.requested_by and job.requested_by not in ("cli", "schedule") else "")
    if job.state == "queued":
        return f":hourglass: Reindex of *{job.source}* queued{who}."
    if job.state == "running":
        if job.phase:
            of = f"/{job.total}" if job.total is not None else ""
            unit = PHASE_UNITS.get(job.phase, "documents done")
            return f":arrows_counterclockwise: Reindexing *{job.source}*: {job.done}{of} {unit}{who}."
        return f":arrows_counterclockwise: Reindexing *{job.source}*…{who}"
    if job.state == "failed":
        return f":x: Reindex of *{job.source}* failed: {job.error}"
    s = job.summary or {}
    failed = s.get("failed") or []
    lines = [f":white_check_mark: Reindexed *{job.source}*: {s.get('added', 0)} added, "
             f"{s.get('updated', 0)} updated, {s.get('unchanged', 0)} unchanged, "
             f"{s.get('removed', 0)} removed, {len(failed)} failed; {s.get('chunks', 0)} chunks "
             f"embedded in {s.get('seconds', 0):.1f} s."]
    for f in failed[:10]:
        lines.append(f"• skipped {f['path']}: {f['reason']}")
    if len(failed) > 10:
        lines.append(f"• … and {len(failed) - 10} more")
    return "\n".join(lines)


class SlackNotifier(Notifier):
    """Keeps one Slack message per job up to date (chat.update on the message the request
    posted; a new message if there is none yet)."""

    def __init__(self, client) -> None:
        self.client = client

    async def update(self, job: Job) -> None:
        if not job.channel:
            return
        text = job_text(job)
        if job.message_ts:
            await self.client.chat_update(channel=job.channel, ts=job.message_ts, text=text)
        else:
            await self.client.chat_postMessage(channel=job.channel, text=text)

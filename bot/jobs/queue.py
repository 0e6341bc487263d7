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
(``kind="finetune"``, ``source`` the model kind, ``params`` the options; see bot.jobs.training).

Why this is not a library queue (issue 13; tried December 2026, saq 0.26.4 built behind this
API, its tests passing): saq's Worker busy-loops while Redis is down (6,378 dequeues in 3 s,
a traceback a second from its upkeep tasks) and completes a job whose function returns, so a job
whose source is locked cannot go back to the queue; saq's job key is unique only while the job
is incomplete and the next run overwrites its record (the recent list needs one record per run);
it needs an undecoded client (its sweep calls ``.decode()``) and ``Queue.from_url`` refuses
``unix://``; it has no dequeue of one job (``sources reindex``) and sweeps a job dequeued but
not yet marked active. Only saq's queue could be used, under this module's own worker, lock,
active pointer and recent list: more lines than the lists it replaced. arq re-runs a dead
worker's job only after the longest job timeout (+10 s) and has no progress; streaq's ``unique``
is per task function, not per source, and it has no progress; taskiq has no unique jobs or lock,
and taskiq-redis redelivers a running job after a fixed idle timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

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


def _gone_here(worker: str) -> bool:
    """A worker of this host whose process no longer exists (an interrupted `sources reindex`,
    a killed `lorebot worker`): dead now, without waiting for its heartbeat to expire."""
    prefix = f"{socket.gethostname()}-"
    if not worker.startswith(prefix):
        return False
    pid_text = worker[len(prefix):].split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


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
            if await self.client.exists(self._k("jobs", "alive", worker)) and \
                    not _gone_here(worker):
                continue
            processing = self._k("jobs", "processing", worker)
            for job_id in await self.client.lrange(processing, 0, -1):
                job = await self.get(job_id)
                await self.client.lrem(processing, 0, job_id)
                if job is None:
                    continue
                # Its lock too, if the dead worker still holds it (a killed process's lock
                # would otherwise block the source until the lock's own TTL).
                await self.client.eval(_RELEASE, 1, self._k("jobs", "lock", job.lock_name), worker)
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


async def wait_for(queue: JobQueue, job_id: str, timeout_s: float = 600.0) -> Job:
    """Poll until the job is done or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = await queue.get(job_id)
        if job is not None and job.state in ("done", "failed"):
            return job
        await asyncio.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish in {timeout_s:g} s")

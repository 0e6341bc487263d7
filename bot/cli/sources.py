"""`lorebot sources list|add|remove|reindex` and `lorebot worker`.

``lorebot sources`` alone lists every source: the registry (in Redis) merged with what the index
holds, with document and chunk counts. ``reindex`` runs the job here, through the same queue,
lock and code a worker uses, and prints its summary (``--json``: the keys of
``lorebot index --json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

from bot.console import EXIT_OK, EXIT_PARTIAL, CliError, print_json

logger = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser("sources", help="list, add, remove and reindex knowledge sources")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(handler=cmd_sources_list)
    ssub = p.add_subparsers(dest="sources_command", metavar="ACTION")

    q = ssub.add_parser("list", help="sources with document and chunk counts (the default)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_sources_list)

    q = ssub.add_parser("add", help="register a folder, a web site (URL, sitemap, crawl) or "
                        "a Slack conversation (--type slack_channel|slack_files)")
    q.add_argument("location", metavar="URL_OR_PATH_OR_ID",
                   help="a path, a URL, or a Slack conversation id (C…, G…; D… for a DM)")
    q.add_argument("--name", help="source name (default: from the URL or folder; "
                   "slack-ID or files-ID for Slack)")
    q.add_argument("--type", choices=("folder", "url", "sitemap", "crawl", "slack_channel",
                                      "slack_files"),
                   help="default: folder for a path, sitemap for *.xml, else crawl; "
                   "slack_channel: a channel's messages; slack_files: the files shared in a "
                   "channel or DM with the bot (both searchable in that conversation only)")
    q.add_argument("--include", action="append", default=[], metavar="GLOB")
    q.add_argument("--exclude", action="append", default=[], metavar="GLOB")
    q.add_argument("--refresh-hours", type=float, help="reindex this often (scheduled refresh)")
    q.add_argument("--private", action="store_true",
                   help="searchable only in channels it is allowed in (`/lorebot channel allow`)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_sources_add)

    q = ssub.add_parser("remove", help="unregister a source and delete its documents")
    q.add_argument("name")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_sources_remove)

    q = ssub.add_parser("reindex", help="reindex a source now and print the summary")
    q.add_argument("name")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_sources_reindex)

    p = sub.add_parser("worker", help="run reindex and training jobs from the queue until stopped")
    p.set_defaults(handler=cmd_worker)


@contextlib.asynccontextmanager
async def _redis(settings) -> AsyncIterator[object]:
    from bot.state.redis import open_redis

    handle = await open_redis(settings)
    try:
        yield handle.client
    finally:
        await handle.aclose()


def _queue(settings, client):
    from bot.jobs.queue import JobQueue

    s = settings.sources
    return JobQueue(client, settings.redis.key_prefix, lock_ttl_s=s.job_lock_ttl_s,
                    max_attempts=s.job_max_attempts)


async def source_rows(registry, index) -> list[dict]:
    """Registry and index stats merged: one row per source either knows. Without the registry
    (``None``: Redis down) nothing is known of a source but its counts: ``public`` is None."""
    from bot.cli.commands import _iso

    stats = {s.source: s for s in await index.source_stats()}
    rows = []
    for src in await registry.list() if registry is not None else []:
        st = stats.pop(src.name, None)
        rows.append({
            "source": src.name, "type": src.type, "location": src.location,
            "public": src.public, "allowed_channels": list(src.allowed_channels),
            "documents": st.documents if st else 0, "chunks": st.chunks if st else 0,
            "last_indexed": _iso(st.last_indexed) if st else None,
            "last_run": _iso(src.last_run), "last_summary": src.last_summary,
            "last_error": src.last_error, "registered": True,
        })
    for st in stats.values():
        rows.append({
            "source": st.source, "type": None, "location": None,
            "public": True if registry is not None else None,
            "allowed_channels": [], "documents": st.documents, "chunks": st.chunks,
            "last_indexed": _iso(st.last_indexed), "last_run": None, "last_summary": None,
            "last_error": None, "registered": False,
        })
    return sorted(rows, key=lambda r: r["source"])


async def cmd_sources_list(args) -> int:
    from redis.exceptions import RedisError

    from bot.runtime.factories import open_index
    from bot.settings import Settings
    from bot.sources.registry import SourceRegistry
    from bot.state.redis import RedisUnavailableError, redacted, redis_url

    settings = Settings()
    index = open_index(settings)
    unavailable: Exception | None = None
    try:
        try:
            async with _redis(settings) as client:
                try:
                    rows = await source_rows(SourceRegistry(client, settings.redis.key_prefix),
                                             index)
                except (RedisError, OSError) as exc:
                    unavailable = exc
        except RedisUnavailableError as exc:  # the embedded Valkey would not start
            unavailable = exc
        if unavailable is not None:
            rows = await source_rows(None, index)
    finally:
        await index.close()
    if unavailable is not None:
        # Said on stderr (stdout stays the listing, JSON included) and in the exit code: the
        # listing is partial, without the registered sources' types and restrictions.
        url = redis_url(settings)
        where = redacted(url) if url else "the embedded Valkey"
        logger.debug("Source registry unavailable: %s", unavailable)
        print(f"lorebot: warning: the source registry ({where}) does not answer: listing only "
              "what the index holds, without types or restrictions. Start Redis, or check "
              "LOREBOT_REDIS__URL.", file=sys.stderr)
    if args.json:
        print_json(rows)
    elif not rows:
        print("No sources in the index." if unavailable is not None else
              "No sources yet. Try `lorebot sources add PATH_OR_URL` or `lorebot index PATH`.")
    else:
        for r in rows:
            kind = f" [{r['type']}{'' if r['public'] else ', restricted'}]" if r["registered"] else ""
            print(f"{r['source']}{kind}: {r['documents']} documents, {r['chunks']} chunks, "
                  f"last indexed {r['last_indexed']}")
            if r["last_error"]:
                print(f"  last run failed: {r['last_error']}")
    return EXIT_PARTIAL if unavailable is not None else EXIT_OK


async def cmd_sources_add(args) -> int:
    from bot.settings import Settings
    from bot.sources.registry import (
        Source,
        SourceRegistry,
        SourceRegistryError,
        default_name,
        guess_type,
    )

    settings = Settings()
    kind = args.type or guess_type(args.location)
    # A Slack conversation's messages or files are restricted to it, as with `/lorebot add`.
    slack = {"slack_channel": "slack", "slack_files": "files"}.get(kind)
    source = Source(
        name=args.name or (f"{slack}-{args.location}" if slack else default_name(args.location)),
        type=kind, location=args.location, include=tuple(args.include),
        exclude=tuple(args.exclude),
        refresh_s=int(args.refresh_hours * 3600) if args.refresh_hours else None,
        public=not (args.private or slack), allowed_channels=(args.location,) if slack else (),
        created_by="cli",
    )
    async with _redis(settings) as client:
        try:
            source = await SourceRegistry(client, settings.redis.key_prefix).add(source)
        except SourceRegistryError as exc:
            raise CliError(str(exc)) from exc
    logger.warning("Source %s added from the command line", source.name)
    if args.json:
        print_json(source.as_dict())
    else:
        print(f"Added source {source.name} ({source.type}: {source.location}). "
              f"Index it with `lorebot sources reindex {source.name}`.")
    return EXIT_OK


async def cmd_sources_remove(args) -> int:
    from bot.jobs.indexing import remove_source_documents
    from bot.runtime.services import build_services
    from bot.settings import Settings
    from bot.sources.registry import SourceRegistry, SourceRegistryError

    settings = Settings()
    async with _redis(settings) as client:
        registry = SourceRegistry(client, settings.redis.key_prefix)
        queue = _queue(settings, client)
        lock_owner = f"cli-remove-{args.name}"
        if not await queue.lock(args.name, lock_owner):
            raise CliError(f"a job is running on {args.name}; try again when it has finished")
        try:
            known = await registry.remove(args.name)
            async with build_services(settings, with_llm=False) as services:
                removed = await remove_source_documents(services, args.name)
        except SourceRegistryError as exc:
            raise CliError(str(exc)) from exc
        finally:
            await queue.unlock(args.name, lock_owner)
    if not known and not removed:
        raise CliError(f"no source named {args.name!r}")
    if args.json:
        print_json({"source": args.name, "removed_documents": removed})
    else:
        print(f"Removed source {args.name} ({removed} documents deleted from the index).")
    return EXIT_OK


async def cmd_sources_reindex(args) -> int:
    from bot.jobs.indexing import index_source
    from bot.jobs.worker import Worker
    from bot.runtime.services import build_services
    from bot.settings import Settings
    from bot.sources.registry import SourceRegistry, SourceRegistryError

    settings = Settings()
    async with _redis(settings) as client, build_services(settings, with_llm=False) as services, \
            _slack_client(settings) as slack_client:
        registry = SourceRegistry(client, settings.redis.key_prefix)
        try:
            await registry.require(args.name)
        except SourceRegistryError as exc:
            raise CliError(str(exc)) from exc
        queue = _queue(settings, client)
        # A job whose owner is gone (an interrupted reindex, a killed worker) is requeued
        # now, so it does not block this one until a worker happens to look.
        await queue.recover()
        job, _created = await queue.enqueue(args.name, requested_by="cli")
        worker = Worker(queue, registry, lambda src, progress: index_source(
            services, src, progress, slack_client=slack_client))
        await queue.heartbeat(worker.id)
        claimed = await queue.claim_id(worker.id, job.id)
        if claimed is None:
            raise CliError(f"a job on {args.name} is already running ({job.id} on {job.worker}); "
                           f"if that worker is gone, it is requeued within "
                           f"{settings.sources.job_lock_ttl_s:g} s (see `/lorebot status`)")
        try:
            job = await worker.process(claimed)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Interrupted: nothing was written (the index run is one transaction); end the job
            # and free the source, so the next reindex need not wait for recovery.
            await asyncio.shield(_abandon(queue, worker.id, claimed))
            raise
        if job.state == "queued":
            raise CliError(f"another worker holds the lock on {args.name}; try again later")
    if job.state == "failed":
        raise CliError(f"reindex of {args.name} failed: {job.error}")
    summary = job.summary or {}
    if args.json:
        print_json(summary)
    else:
        print(f"{args.name}: added {summary['added']}, updated {summary['updated']}, "
              f"unchanged {summary['unchanged']}, removed {summary['removed']}, "
              f"failed {len(summary['failed'])}; {summary['chunks']} chunks in "
              f"{summary['seconds']:.1f} s")
        for f in summary["failed"]:
            print(f"  skipped {f['path']}: {f['reason']}")
    return EXIT_PARTIAL if summary.get("failed") else EXIT_OK


async def _abandon(queue, worker_id: str, job) -> None:
    import time
    from dataclasses import replace

    with contextlib.suppress(Exception):  # best effort: recovery covers what this misses
        await queue.finish(worker_id, replace(job, state="failed", finished=time.time(),
                                              error="interrupted; nothing was changed"))
        await queue.unlock(job.lock_name, worker_id)


@contextlib.asynccontextmanager
async def _slack_client(settings) -> AsyncIterator[object]:
    """The bot's Web API client when a bot token is set (Slack sources need it), else None."""
    token = settings.slack.bot_token
    if token is None or not token.get_secret_value():
        yield None
        return
    import aiohttp

    from bot.slack.app import web_client

    async with aiohttp.ClientSession() as session:
        yield web_client(settings, session)


async def cmd_worker(args) -> int:
    from bot.cli.common import until_stopped
    from bot.runtime.services import build_services
    from bot.settings import Settings

    settings = Settings()
    async with _redis(settings) as client, build_services(settings, with_llm=False) as services:
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker(settings, services, client, stop))
        print("lorebot worker is running reindex and training jobs. Ctrl-C stops.",
              file=sys.stderr)
        try:
            await until_stopped()
        finally:
            stop.set()
            await task
    return EXIT_OK


async def run_worker(settings, services, client, stop: asyncio.Event, *, slack_client=None,
                     worker_id: str | None = None) -> None:
    """One worker on ``client``'s queue until ``stop``; reports to Slack when it can. It runs
    reindex jobs and training jobs (`/lorebot finetune`, bot.jobs.training)."""
    from bot.jobs.indexing import index_source
    from bot.jobs.training import training_runner
    from bot.jobs.worker import Worker
    from bot.slack.notifier import SlackNotifier
    from bot.sources.registry import SourceRegistry

    notifier = None
    owned_session = None
    if slack_client is None and settings.slack.bot_token is not None:
        import aiohttp

        from bot.slack.app import web_client

        owned_session = aiohttp.ClientSession()
        slack_client = web_client(settings, owned_session)
    if slack_client is not None:
        notifier = SlackNotifier(slack_client)
    worker = Worker(
        _queue(settings, client), SourceRegistry(client, settings.redis.key_prefix),
        lambda src, progress: index_source(services, src, progress, slack_client=slack_client),
        notifier=notifier, worker_id=worker_id,
        progress_interval_s=settings.sources.progress_interval_s,
        run_training=training_runner(settings),
    )
    try:
        await worker.run(stop)
    finally:
        if owned_session is not None:
            await owned_session.close()

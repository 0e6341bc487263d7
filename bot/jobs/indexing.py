"""Running a reindex job: load a registered source (folder, web, Slack channel or files) and
bring the index in line with it."""

from __future__ import annotations

from bot.jobs.queue import Progress
from bot.sources.registry import WEB_TYPES, Source, SourceRegistryError


def crawl_limits(settings):
    from search.web import CrawlLimits

    s = settings.sources
    return CrawlLimits(max_pages=s.crawl_max_pages, max_depth=s.crawl_max_depth,
                       concurrency=s.crawl_concurrency, timeout_s=s.fetch_timeout_s,
                       max_bytes=int(s.max_page_mb * 1024 * 1024), user_agent=s.user_agent,
                       allow_private=_names(s.allow_private_hosts),
                       allow_hosts=_names(s.allow_other_hosts))


def _names(setting: str) -> tuple[str, ...]:
    return tuple(n.strip().lower() for n in setting.split(",") if n.strip())


async def index_source(services, source: Source, progress: Progress | None = None, *,
                       slack_client=None) -> dict:
    """Load a registered source and bring the index in line with it; returns the summary dict
    (the keys of ``lorebot index --json``)."""
    report = progress or (lambda *_: None)
    scope: dict = {}
    stale: str | None = None
    if source.type == "folder":
        from pathlib import Path

        from search.loaders import DEFAULT_EXCLUDES, discover, iter_documents

        files = discover([Path(source.location)], include=source.include or ("**/*",),
                         exclude=(*DEFAULT_EXCLUDES, *source.exclude))
        max_bytes = int(services.settings.search.max_file_mb * 1024 * 1024)
        items = iter_documents(files, source=source.name, max_bytes=max_bytes)
        total: int | None = len(files)
        # The registered folder is the whole source: what is no longer in it is removed, and
        # the indexer refuses a folder another source already holds.
        scope = {"paths": [source.location], "prune": True}
    elif source.type in WEB_TYPES:
        from search.web import crawl

        items = await crawl(source.name, source.location, source.type,
                            crawl_limits(services.settings),
                            on_progress=lambda d, t: report("fetching", d, t))
        total = len(items)
        if items.stale:
            # The start page or sitemap failed: the pages it would have listed are unknown, not
            # gone. Keep every page indexed before and say the source is stale.
            scope = {"remove_missing": False}
            stale = items.stale
    elif source.type in ("slack_channel", "slack_files") and slack_client is None:
        raise SourceRegistryError(f"{source.type} sources cannot be indexed without a Slack bot "
                                  "token (set LOREBOT_SLACK__BOT_TOKEN)")
    elif source.type == "slack_channel":
        from bot.sources.slack_channel import load_channel

        items = await load_channel(slack_client, source.name, source.location,
                                   on_progress=lambda d, t: report("reading", d, t))
        total = len(items)
    elif source.type == "slack_files":
        from bot.sources.slack_files import load_files

        s = services.settings
        items = await load_files(slack_client, source.name, source.location,
                                 max_bytes=int(s.search.max_file_mb * 1024 * 1024),
                                 timeout_s=s.sources.fetch_timeout_s,
                                 on_progress=lambda d, t: report("downloading", d, t))
        total = len(items)
    else:
        raise SourceRegistryError(f"{source.type} sources cannot be indexed yet")
    summary = await services.indexer.index_documents(
        source.name, items, total=total, on_progress=lambda d, t: report("indexing", d, t),
        **scope,
    )
    result = summary.as_dict()
    if stale:
        result["stale"] = stale
    return result


async def remove_source_documents(services, name: str) -> int:
    """Delete every indexed document of ``name`` in one transaction; returns how many."""
    summary = await services.indexer.index_documents(name, [], remove_missing=True)
    return summary.removed

"""The App Home tab: the knowledge sources with their counts, last run and errors, the running
and recent reindex jobs, and (for admins) a Reindex button per source."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.texts import job_text
from handlers import render, texts
from handlers.access import audit, is_admin, refusal, visible_jobs
from handlers.admin import REGISTRY_DOWN

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

HOME_REINDEX = "lorebot_home_reindex"
# Sources shown on the tab: with the headers, a notice and ten jobs, well within 100 blocks.
MAX_SOURCE_BLOCKS = 80


def register(app: AsyncApp, bot: SlackBot) -> None:
    """Publish the Home tab when it is opened; handle its Reindex buttons."""

    @app.event("app_home_opened")
    async def on_home(event: dict, client: AsyncWebClient) -> None:
        if event.get("tab", "home") == "home":
            await publish_home(bot, client, event["user"])

    @app.action(HOME_REINDEX)
    async def on_reindex(ack, body: dict, action: dict, client: AsyncWebClient) -> None:
        await ack()
        user = body["user"]["id"]
        if not await is_admin(bot, client, user):
            audit("home reindex", user=user, outcome="refused", reason="not an admin",
                  source=action.get("value"))
            await publish_home(bot, client, user, notice=refusal("reindex"))
            return
        try:
            if await bot.sources.get(action["value"]) is None:  # a forged or stale button
                audit("home reindex", user=user, outcome="refused", reason="no such source",
                      source=action["value"])
                await publish_home(bot, client, user,
                                   notice="That source does not exist (any more).")
                return
            job, created = await bot.jobs.enqueue(action["value"], requested_by=user)
        except (RedisError, OSError) as exc:
            logger.warning("Home reindex of %r failed: Redis unavailable (%s)", action["value"], exc)
            audit("home reindex", user=user, outcome="failed", reason="registry unavailable",
                  source=action["value"])
            await publish_home(bot, client, user)  # shows the registry notice
            return
        audit("home reindex", user=user, outcome="done", source=action["value"])
        notice = (f"Reindex of *{job.source}* queued." if created
                  else f"A reindex of *{job.source}* is already {job.state}.")
        await publish_home(bot, client, user, notice=notice)


async def publish_home(bot: SlackBot, client: AsyncWebClient, user: str,
                       notice: str | None = None) -> None:
    try:
        view = await home_view(bot, await is_admin(bot, client, user), notice)
    except (RedisError, OSError) as exc:
        # The sources and jobs live in Redis: say so on the tab rather than leave it stale.
        logger.warning("Home tab for %s without sources: Redis unavailable (%s)", user, exc)
        view = {"type": "home", "blocks": [render.header("Knowledge sources"),
                                           render.section(REGISTRY_DOWN)]}
    try:
        await client.views_publish(user_id=user, view=view)
    except SlackClientError as exc:
        logger.warning("Could not publish the Home tab for %s: %s", user, exc)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if ts else "never"


async def home_view(bot: SlackBot, admin: bool, notice: str | None = None) -> dict[str, Any]:
    """The Home tab: at most :data:`MAX_SOURCE_BLOCKS` sources (then a line saying how many
    more; ``/lorebot sources`` lists them all) and the recent jobs, within Slack's 100 blocks.
    Non-admins see public sources only, and only their jobs (the tab belongs to no channel)."""
    counts: dict[str, tuple[int, int]] = {}
    index = getattr(getattr(bot.pipeline, "retriever", None), "index", None)
    if index is not None and hasattr(index, "source_stats"):
        counts = {s.source: (s.documents, s.chunks) for s in await index.source_stats()}
    blocks: list[dict[str, Any]] = [render.header("Knowledge sources")]
    if notice:
        blocks.append(render.context(notice))
    sources = [src for src in await bot.sources.list() if admin or src.public]
    if not sources:
        blocks.append(render.section(
            "No sources yet. Admins add one with `/lorebot add URL_OR_PATH`."))
    for src in sources[:MAX_SOURCE_BLOCKS]:
        docs, chunks = counts.get(src.name, (0, 0))
        text = (f"*{src.name}* ({src.type}{'' if src.public else ', restricted'}) — "
                f"{render.shown(src.location)}\n"
                f"{docs} documents, {chunks} chunks · last indexed {_when(src.last_run)}")
        if src.last_error:
            text += f"\n:warning: last run failed: {render.shown(src.last_error, 500)}"
        elif src.last_summary and src.last_summary.get("failed"):
            text += f"\n{len(src.last_summary['failed'])} pages or files failed in the last run"
        button = render.button("Reindex", HOME_REINDEX, src.name) if admin else None
        blocks.append(render.section(text, button))
    if len(sources) > MAX_SOURCE_BLOCKS:
        blocks.append(render.context(
            f"{texts.more_not_shown(len(sources) - MAX_SOURCE_BLOCKS)}: `/lorebot sources` "
            "lists them all."))
    jobs = await visible_jobs(bot, await bot.jobs.recent(10), None, admin)
    if not admin:
        jobs = [j for j in jobs if j.state in ("queued", "running")]
    if jobs:
        blocks.append(render.header("Jobs"))
        blocks += [render.section(job_text(j).splitlines()[0]) for j in jobs]
    return {"type": "home", "blocks": render.fit_blocks(blocks, render.VIEW_BLOCKS)}

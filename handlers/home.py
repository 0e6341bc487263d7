"""The App Home tab: the knowledge sources with their counts, last run and errors, the running
and recent reindex jobs, and (for admins) a Reindex button per source."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.texts import job_text
from handlers.access import audit, is_admin, refusal

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)

HOME_REINDEX = "lorebot_home_reindex"


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
            audit.warning("Refused a Home reindex of %s for non-admin %s", action["value"], user)
            await publish_home(bot, client, user, notice=refusal("reindex"))
            return
        job, created = await bot.jobs.enqueue(action["value"], requested_by=user)
        audit.warning("Admin %s requested a reindex of %s from the Home tab", user, action["value"])
        notice = (f"Reindex of *{job.source}* queued." if created
                  else f"A reindex of *{job.source}* is already {job.state}.")
        await publish_home(bot, client, user, notice=notice)


async def publish_home(bot: SlackBot, client: AsyncWebClient, user: str,
                       notice: str | None = None) -> None:
    try:
        view = await home_view(bot, await is_admin(bot, client, user), notice)
        await client.views_publish(user_id=user, view=view)
    except SlackClientError as exc:
        logger.warning("Could not publish the Home tab for %s: %s", user, exc)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if ts else "never"


async def home_view(bot: SlackBot, admin: bool, notice: str | None = None) -> dict[str, Any]:
    counts: dict[str, tuple[int, int]] = {}
    index = getattr(getattr(bot.pipeline, "retriever", None), "index", None)
    if index is not None and hasattr(index, "source_stats"):
        counts = {s.source: (s.documents, s.chunks) for s in await index.source_stats()}
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Knowledge sources"}}]
    if notice:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": notice}]})
    sources = await bot.sources.list()
    if not sources:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text":
                       "No sources yet. Admins add one with `/lorebot add URL_OR_PATH`."}})
    for src in sources:
        if not (admin or src.public):
            continue
        docs, chunks = counts.get(src.name, (0, 0))
        text = (f"*{src.name}* ({src.type}{'' if src.public else ', restricted'}) — {src.location}\n"
                f"{docs} documents, {chunks} chunks · last indexed {_when(src.last_run)}")
        if src.last_error:
            text += f"\n:warning: last run failed: {src.last_error}"
        elif src.last_summary and src.last_summary.get("failed"):
            text += f"\n{len(src.last_summary['failed'])} pages or files failed in the last run"
        section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        if admin:
            section["accessory"] = {"type": "button", "action_id": HOME_REINDEX, "value": src.name,
                                    "text": {"type": "plain_text", "text": "Reindex"}}
        blocks.append(section)
    jobs = [j for j in await bot.jobs.recent(10) if admin or j.state in ("queued", "running")]
    if jobs:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Jobs"}})
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": job_text(j).splitlines()[0]}}
                   for j in jobs]
    return {"type": "home", "blocks": blocks}

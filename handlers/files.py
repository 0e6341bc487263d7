"""Files shared in a conversation that is a ``slack_files`` source queue a reindex of it.

Slack announces a share twice: a ``file_shared`` event and a ``message`` (subtype ``file_share``)
carrying ``files``. The message is also a possible question for the ``message`` listener, and
bolt runs only the first listener that matches, so it is noticed in a middleware that lets every
request through. Both paths only start a background task (the ack must not wait on Redis); the
job queue keeps one queued job per source, so the two events make one reindex.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)


def register(app: AsyncApp, bot: SlackBot) -> None:
    """Listen to ``file_shared`` and watch messages with files."""

    @app.event("file_shared")
    async def on_file_shared(event: dict) -> None:
        note_shared_file(bot, event.get("channel_id"), event.get("user_id"))

    @app.middleware
    async def on_message_with_files(body: dict, next_) -> None:
        event = body.get("event") or {}
        if body.get("type") == "event_callback" and event.get("type") == "message" \
                and event.get("files"):
            note_shared_file(bot, event.get("channel"), event.get("user"))
        await next_()


def note_shared_file(bot: SlackBot, channel: str | None, user: str | None) -> None:
    """Queue, in the background, a reindex of the slack_files sources of ``channel``."""
    if channel and bot.sources is not None and bot.jobs is not None:
        bot.spawn(_queue_reindex(bot, channel, user), name=f"file shared {channel}")


async def _queue_reindex(bot: SlackBot, channel: str, user: str | None) -> None:
    try:
        for source in await bot.sources.list():
            if source.type == "slack_files" and source.location == channel:
                job, created = await bot.jobs.enqueue(source.name, requested_by=user)
                if created:
                    logger.info("File shared in %s: reindex of %s queued (job %s)", channel,
                                source.name, job.id)
    except Exception:  # noqa: BLE001 - Redis down: the next share or reindex catches up
        logger.warning("Could not queue a reindex for a file shared in %s", channel,
                       exc_info=True)

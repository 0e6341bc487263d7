"""Job progress in Slack: one message per job, kept up to date."""

from __future__ import annotations

from bot.jobs.queue import Job
from bot.jobs.texts import job_text
from bot.jobs.worker import Notifier


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

"""The feedback buttons under an answer: store the rating with the answer, thank the user."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.app import new_error_id
from bot.state.feedback import RATINGS, FeedbackRecord
from handlers import texts
from handlers.render import FEEDBACK_ACTION_PREFIX

if TYPE_CHECKING:
    from bot.slack.app import SlackBot

logger = logging.getLogger(__name__)


def register(app: AsyncApp, bot: SlackBot) -> None:
    """Listen to clicks on the feedback buttons."""

    @app.action(re.compile(f"^{FEEDBACK_ACTION_PREFIX}"))
    async def on_feedback(ack, body: dict, action: dict, client: AsyncWebClient, respond) -> None:
        await ack()
        await handle_feedback(bot, client, respond, body, action)


async def handle_feedback(bot: SlackBot, client: AsyncWebClient, respond, body: dict[str, Any],
                          action: dict[str, Any]) -> None:
    """Store one click and answer with an ephemeral thanks (or an error id)."""
    rating = action["action_id"].removeprefix(FEEDBACK_ACTION_PREFIX)
    if rating not in RATINGS:
        logger.warning("Unknown feedback action %s", action["action_id"])
        return
    container = body.get("container") or {}
    message = body.get("message") or {}
    user = body["user"]["id"]
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    thread_ts = message.get("thread_ts") or container.get("thread_ts")
    try:
        record = await bot.feedback.get_answer(action["value"])
        if record is None:
            logger.warning("Feedback on answer %s, whose record has expired", action["value"])
        await bot.feedback.add(FeedbackRecord(
            answer_id=action["value"], rating=rating, user=user, channel=channel,
            message_ts=container.get("message_ts") or message.get("ts"), answer=record,
        ))
        reply = texts.FEEDBACK_THANKS[rating]
    except Exception:  # noqa: BLE001 - the user is told, with an id to report
        error_id = new_error_id()
        logger.exception("Storing feedback failed (error id %s)", error_id)
        reply = texts.feedback_error(error_id)
    await _thank(client, respond, body, channel, user, thread_ts, reply)


async def _thank(client: AsyncWebClient, respond, body: dict, channel: str | None, user: str,
                 thread_ts: str | None, text: str) -> None:
    if channel and not (body.get("container") or {}).get("is_ephemeral"):
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text,
                                            thread_ts=thread_ts)
            return
        except SlackClientError as exc:
            logger.info("postEphemeral failed (%s); using the response URL", exc)
    try:
        await respond(text=text, response_type="ephemeral", replace_original=False)
    except Exception as exc:  # noqa: BLE001 - a lost thank-you is not worth more than a log line
        logger.warning("Could not thank for feedback: %s", exc)

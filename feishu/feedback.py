"""The 👍/👎 buttons under an answer card: a ``card.action.trigger`` callback, stored with the
answer as Slack's feedback is (``bot.state.feedback``), answered with a toast."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTrigger

from bot.service.conversation import new_error_id
from bot.state.feedback import RATINGS, FeedbackRecord
from feishu import texts
from feishu.card import FEEDBACK_ACTION

if TYPE_CHECKING:
    from feishu.bot import LarkBot

logger = logging.getLogger(__name__)


def toast(kind: str, content: str) -> dict[str, Any]:
    return {"toast": {"type": kind, "content": content}}


async def handle_click(bot: LarkBot, trigger: P2CardActionTrigger) -> dict[str, Any]:
    """Store one click; the callback's response body (a toast for the clicker)."""
    event = trigger.event
    action = getattr(event, "action", None)
    value = getattr(action, "value", None) or {}
    if not isinstance(value, dict) or value.get("action") != FEEDBACK_ACTION:
        return {}  # another card's button: nothing for the bot to do
    rating, answer_id = value.get("rating"), value.get("answer_id")
    user = getattr(getattr(event, "operator", None), "open_id", None)
    context = getattr(event, "context", None)
    if rating not in RATINGS or not isinstance(answer_id, str) or not user:
        logger.warning("A feedback click without a known rating, answer or user: ignored")
        return toast("error", "This button is not one I know.")
    try:
        record = await bot.feedback.get_answer(answer_id)
        if record is None:
            logger.warning("Feedback on answer %s, whose record has expired", answer_id)
        await bot.feedback.add(FeedbackRecord(
            answer_id=answer_id, rating=rating, user=user,
            channel=getattr(context, "open_chat_id", None) or "",
            message_ts=getattr(context, "open_message_id", None), answer=record))
    except Exception:  # noqa: BLE001 - the user is told, with an id to report
        error_id = new_error_id()
        logger.exception("Storing feedback failed (error id %s)", error_id)
        return toast("error", texts.feedback_error(error_id))
    return toast("success", texts.FEEDBACK_THANKS[rating])

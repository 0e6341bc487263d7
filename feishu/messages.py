"""Questions from ``im.message.receive_v1``: a direct (p2p) chat with the bot, an @mention of
the bot in a group, or a follow-up in a group thread the bot answered.

Feishu delivers an event again when it is not acknowledged within three seconds, and may deliver
it twice anyway: each message is claimed in Redis by its event id and its message id before it
is answered, so it gets one reply.

In a group the answer goes into the question's thread (``reply_in_thread``), whose root message
keys the conversation memory; in a direct chat it is a reply below the question, and the chat
itself is the conversation.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.service.conversation import Place
from feishu import commands
from feishu.reply import Target, answer_question

if TYPE_CHECKING:
    from feishu.bot import LarkBot

logger = logging.getLogger(__name__)

COMMAND_PREFIX = "/lorebot"


@dataclass(frozen=True)
class Incoming:
    """The parts of a received message the bot needs."""

    event_id: str | None
    message_id: str
    chat_id: str
    direct: bool
    root_id: str | None  # the thread's first message, when the message is in a thread
    sender: str  # open_id
    tenant: str | None
    text: str  # mentions of the bot removed, others replaced by the person's name
    mentions_bot: bool
    mentions_other: bool


def parse(event_id: str | None, event: dict[str, Any], bot_open_id: str | None) -> Incoming | None:
    """The message in ``event``, or None when it is no question material (a bot's message, an
    image, a message without its ids)."""
    sender = event.get("sender") or {}
    message = event.get("message") or {}
    if sender.get("sender_type") != "user":
        return None
    open_id = (sender.get("sender_id") or {}).get("open_id")
    message_id, chat_id = message.get("message_id"), message.get("chat_id")
    if not (open_id and message_id and chat_id):
        return None
    text = message_text(message.get("message_type"), message.get("content"))
    if text is None:
        return None
    mentions_bot = mentions_other = False
    for mention in message.get("mentions") or []:
        key = mention.get("key") or ""
        is_bot = bot_open_id is not None and (mention.get("id") or {}).get("open_id") == bot_open_id
        mentions_bot |= is_bot
        mentions_other |= not is_bot
        if key:
            text = text.replace(key, "" if is_bot else f"@{mention.get('name') or 'someone'}")
    return Incoming(
        event_id=event_id, message_id=message_id, chat_id=chat_id,
        direct=message.get("chat_type") == "p2p", root_id=message.get("root_id") or None,
        sender=open_id, tenant=sender.get("tenant_key"), text=" ".join(text.split()),
        mentions_bot=mentions_bot, mentions_other=mentions_other)


def message_text(kind: str | None, content: str | None) -> str | None:
    """The text of a ``text`` or ``post`` (rich text) message; None for anything else."""
    try:
        data = json.loads(content or "{}")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if kind == "text":
        return str(data.get("text") or "")
    if kind == "post":
        # {"title": …, "content": [[{"tag": "text", "text": …}, {"tag": "at", …}], …]}, possibly
        # under a language key ("zh_cn": {…}).
        post = data if "content" in data else next(
            (v for v in data.values() if isinstance(v, dict)), {})
        lines = [post.get("title") or ""]
        for paragraph in post.get("content") or []:
            parts = []
            for node in paragraph if isinstance(paragraph, list) else []:
                if node.get("tag") in ("text", "a"):
                    parts.append(str(node.get("text") or ""))
                elif node.get("tag") == "at":
                    # Its user_id is the mention's key (@_user_1), replaced like a text's.
                    parts.append(str(node.get("user_id") or ""))
            lines.append("".join(parts))
        return "\n".join(line for line in lines if line)
    return None


def place_of(msg: Incoming) -> Place:
    if msg.direct:
        return Place(conversation=msg.chat_id, thread=None, user=msg.sender,
                     memory=f"lark:{msg.chat_id}", workspace=msg.tenant, platform="lark",
                     direct=True)
    root = msg.root_id or msg.message_id
    return Place(conversation=msg.chat_id, thread=root, user=msg.sender,
                 memory=f"lark:{msg.chat_id}:{root}", workspace=msg.tenant, platform="lark")


async def handle_message(bot: LarkBot, event_id: str | None, event: dict[str, Any]) -> None:
    """Answer the message in ``event`` if it is a question for the bot, once."""
    msg = parse(event_id, event, bot.open_id)
    if msg is None:
        return
    place = place_of(msg)
    if not (msg.direct or msg.mentions_bot):
        # A group message without a mention (delivered when the app may read all group
        # messages): only a follow-up in a thread the bot answered, not meant for someone else.
        if msg.root_id is None or msg.mentions_other or not await bot.service.is_followup(place):
            return
    keys = [f"lark:message:{msg.message_id}"] + ([f"lark:event:{event_id}"] if event_id else [])
    if not await bot.service.claim(*keys):
        logger.info("Skipping a duplicate of message %s in %s", msg.message_id, msg.chat_id)
        return
    target = Target(message_id=msg.message_id, chat_id=msg.chat_id, in_thread=not msg.direct)
    if re.match(rf"{re.escape(COMMAND_PREFIX)}(\s|$)", msg.text):
        bot.spawn(commands.run(bot, target, msg.sender, msg.text[len(COMMAND_PREFIX):].strip()),
                  name=f"lark command {msg.message_id}")
        return
    bot.spawn(answer_question(bot, target, place, msg.text),
              name=f"lark answer {msg.chat_id}/{msg.message_id}")

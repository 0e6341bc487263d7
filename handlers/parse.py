"""Reading Slack payloads: which messages are questions, and their text as plain words."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

# Message subtypes that are still a person writing: everything else (edits, deletions, joins,
# channel topic changes, bot messages…) is not a question.
QUESTION_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_SUBTEAM = re.compile(r"<!subteam\^[A-Z0-9]+(?:\|([^>]*))?>")
_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>|<([^<>]+)>")


@dataclass(frozen=True)
class Place:
    """Where a question was asked and where its answer goes.

    ``thread_ts`` None means the answer goes to the top level (a DM outside a thread);
    ``question_ts`` is the user's message (None for a slash command); ``conversation`` keys the
    conversation memory.
    """

    channel: str
    thread_ts: str | None
    question_ts: str | None
    user: str
    team: str | None
    conversation: str
    assistant: bool = False


def is_person_message(event: dict[str, Any]) -> bool:
    """A new message written by a person (not a bot, an edit, a join or other subtype)."""
    if event.get("bot_id") or event.get("bot_profile") or not event.get("user"):
        return False
    return event.get("subtype") in QUESTION_SUBTYPES


def mentions(text: str, user_id: str | None) -> bool:
    return bool(user_id) and any(m == user_id for m in _USER_MENTION.findall(text or ""))


def mentions_someone_else(text: str, bot_user_id: str | None) -> bool:
    """Whether the message addresses another person (then a thread follow-up is not for us)."""
    return any(m != bot_user_id for m in _USER_MENTION.findall(text or ""))


def question_text(text: str, bot_user_id: str | None) -> str:
    """The question in a Slack message as plain text: the bot's mention removed, other mentions,
    channels and links turned into words, entities unescaped."""
    text = text or ""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = _USER_MENTION.sub(lambda m: f"@{m.group(1)}", text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(1)}", text)
    text = _SPECIAL.sub(lambda m: f"@{m.group(1)}", text)
    text = _SUBTEAM.sub(lambda m: m.group(1) or "@team", text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(3), text)
    return " ".join(html.unescape(text).split())


def conversation_key(team: str | None, channel: str, thread_ts: str | None) -> str:
    """The conversation memory key of a thread (or of a whole DM when there is no thread)."""
    return f"{team or '-'}:{channel}:{thread_ts or 'main'}"


def dedupe_keys(event: dict[str, Any], event_id: str | None) -> list[str]:
    """Keys that identify one question across Slack's duplicates: the message (channel + ts, the
    same in a `message` and its `app_mention`) and the delivery (event id, the same in retries)."""
    keys = [f"msg:{event.get('channel')}:{event.get('ts')}"]
    if event_id:
        keys.append(f"evt:{event_id}")
    return keys

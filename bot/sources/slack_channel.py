"""Slack channel messages as a knowledge source: each thread (or single message) of a channel
becomes a `Document` whose url is the message's permalink.

Reads ``conversations.history`` page by page and ``conversations.replies`` for threads (the
bot must be in the channel: ``channels:history``/``groups:history``). Bot messages, joins and
other subtyped messages are skipped. The doc id comes from the channel and the thread's ts, so
an unchanged thread is not re-embedded and a thread with a new reply is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from search.loaders import make_doc_id
from search.models import Document, LoadFailure
from search.text import content_hash, plain_text

logger = logging.getLogger(__name__)

_SKIP_SUBTYPES = {"channel_join", "channel_leave", "bot_message", "channel_topic",
                  "channel_purpose", "channel_name"}


class SlackSourceError(Exception):
    """The channel cannot be read (the message says which and why)."""


async def _call(client, method: str, **args) -> dict:
    from slack_sdk.errors import SlackApiError

    try:
        # POST for every method (Slack accepts it): one verb through proxies and the test fake.
        return (await client.api_call(method, data=args)).data
    except SlackApiError as exc:
        error = exc.response.get("error")
        hint = " (invite the bot to the channel)" if error in ("not_in_channel", "channel_not_found") else ""
        raise SlackSourceError(f"{method} failed for {args.get('channel')}: {error}{hint}") from exc


def _usable(message: dict) -> bool:
    return bool((message.get("text") or "").strip()) and not message.get("bot_id") \
        and message.get("subtype") not in _SKIP_SUBTYPES


async def load_channel(client, source: str, channel: str, *, max_threads: int = 2000,
                       on_progress: Callable[[int, int | None], None] | None = None,
                       ) -> list[Document | LoadFailure]:
    """The channel's threads as documents (newest ``max_threads``)."""
    tops: list[dict] = []
    cursor = None
    while len(tops) < max_threads:
        page = await _call(client, "conversations.history", channel=channel, limit=200,
                           **({"cursor": cursor} if cursor else {}))
        tops += [m for m in page.get("messages", []) if _usable(m)]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page.get("has_more") or not cursor:
            break
    tops = tops[:max_threads]
    items: list[Document | LoadFailure] = []
    for n, top in enumerate(tops, 1):
        messages = [top]
        try:
            if top.get("reply_count"):
                replies = await _call(client, "conversations.replies", channel=channel,
                                      ts=top["ts"], limit=200)
                messages = [m for m in replies.get("messages", []) if _usable(m)] or [top]
            link = await _call(client, "chat.getPermalink", channel=channel,
                               message_ts=top["ts"])
        except SlackSourceError as exc:
            items.append(LoadFailure(f"{channel}/{top['ts']}", str(exc)))
            continue
        text = "\n\n".join(f"<@{m.get('user', '?')}>: {m['text'].strip()}" for m in messages)
        # Titles are plain text everywhere (citations, the BM25 title field): *bold*, `code`.
        first_line = plain_text(top["text"].strip().splitlines()[0])[:80]
        url = link.get("permalink")
        items.append(Document(
            doc_id=make_doc_id(source, f"{channel}/{top['ts']}"), source=source,
            title=first_line, text=text, content_hash=content_hash(first_line, text),
            path=url, url=url, modified=float(messages[-1]["ts"]),
        ))
        if on_progress:
            on_progress(n, len(tops))
    return items

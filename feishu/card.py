"""The interactive cards the bot sends (card JSON 1.0, as ``im/v1/messages`` takes it).

An answer card: the answer's text with its ``[n]`` citations linked to their sources, a note
when the answer has one (the LLM was unavailable…), the sources section, and 👍/👎 buttons whose
value names the answer; their clicks come back as ``card.action.trigger`` callbacks
(``feishu.feedback``). ``update_multi`` makes the card patchable for everyone in the chat, which
is how the answer streams.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from bot.answer.pipeline import Answer, Citation
from bot.answer.quotes import cut_text

Card = dict[str, Any]

# Feishu refuses cards over about 30 KB; the answer text is cut well before that.
TEXT_CHARS = 6000
SNIPPET_CHARS = 140
TITLE_CHARS = 120
URL_CHARS = 1000
STREAMING_CURSOR = " …"
SOURCES_HEADING = "**Sources**"
FEEDBACK_ACTION = "lorebot_feedback"
BUTTONS = (("helpful", "👍 Helpful", "primary"), ("not_helpful", "👎 Not helpful", "default"))
ANSWER_CUT = "\n\n*… (the rest of this answer is too long for one card)*"

_CITATION = re.compile(r"\[(\d{1,3})\](?!\()")


def safe_markdown(text: str) -> str:
    """Text as card markdown that cannot do more than show itself: ``<`` is escaped, so text
    from a document or a model cannot become an ``<at id=all>`` mention of the whole chat or
    other card tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _usable(url: str | None) -> bool:
    return bool(url) and len(url) <= URL_CHARS and re.match(r"(?i)^https?://", url) is not None


def _url(url: str) -> str:
    # A ")" or a space would end the Markdown link early.
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _label(text: str, limit: int) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else cut_text(text, limit - 1) + "…"
    return safe_markdown(text).replace("[", "(").replace("]", ")")


def link_citations(text: str, citations: Sequence[Citation]) -> str:
    """``[n]`` becomes a link to source n when it has a web address; others stay as typed."""
    urls = {c.n: c.url for c in citations if _usable(c.url)}
    return _CITATION.sub(lambda m: f"[[{m.group(1)}]]({_url(urls[int(m.group(1))])})"
                         if int(m.group(1)) in urls else m.group(0), text)


def body(text: str, citations: Sequence[Citation] = ()) -> str:
    if len(text) > TEXT_CHARS:
        text = cut_text(text, TEXT_CHARS) + ANSWER_CUT
    return link_citations(safe_markdown(text), citations)


def sources_markdown(citations: Sequence[Citation]) -> str:
    lines = [SOURCES_HEADING]
    for c in citations:
        title = _label(c.title or "no title", TITLE_CHARS)
        line = f"**[{c.n}]** " + (f"[{title}]({_url(c.url)})" if _usable(c.url) else title)
        if not _usable(c.url) and c.path:
            line += f" ({_label(PurePath(c.path).name, TITLE_CHARS)})"
        if c.snippet:
            line += f"\n{_label(c.snippet, SNIPPET_CHARS)}"
        lines.append(line)
    return "\n".join(lines)


def _card(elements: list[dict[str, Any]]) -> Card:
    return {"config": {"wide_screen_mode": True, "update_multi": True}, "elements": elements}


def _markdown(content: str) -> dict[str, Any]:
    return {"tag": "markdown", "content": content}


def _note(text: str) -> dict[str, Any]:
    return {"tag": "note", "elements": [{"tag": "plain_text", "content": text}]}


def feedback_buttons(answer_id: str) -> dict[str, Any]:
    return {"tag": "action", "actions": [
        {"tag": "button", "text": {"tag": "plain_text", "content": label}, "type": kind,
         "value": {"action": FEEDBACK_ACTION, "rating": rating, "answer_id": answer_id}}
        for rating, label, kind in BUTTONS]}


def answer_card(answer: Answer, answer_id: str, *, max_sources: int = 5) -> Card:
    citations = answer.citations[:max_sources]
    elements = [_markdown(body(answer.text, answer.citations))]
    if answer.notice:
        elements.append(_note(answer.notice))
    if citations:
        elements += [{"tag": "hr"}, _markdown(sources_markdown(citations))]
    elements.append(feedback_buttons(answer_id))
    return _card(elements)


def streaming_card(text: str) -> Card:
    """The card while the answer streams: the text so far (citations not linked yet)."""
    return _card([_markdown(body(text) + STREAMING_CURSOR)])


def text_card(text: str) -> Card:
    """A short reply that is not an answer (an error with its id, a notice, the rate limit)."""
    return _card([_markdown(safe_markdown(text))])

"""Answers as Slack messages: Markdown → mrkdwn, and the Block Kit of an answer.

An answer message is: an optional notice, the answer text (citations ``[n]`` linked to their
source), a sources list (title linked, short snippet) and the feedback buttons. The buttons carry
the answer's id; ``handlers.actions`` matches their ``action_id`` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from bot.answer.pipeline import Answer, Citation, snippet
from handlers import texts

Block = dict[str, Any]

FEEDBACK_BLOCK_ID = "lorebot_feedback"
FEEDBACK_ACTION_PREFIX = "lorebot_feedback_"
# Slack limits: 3000 characters per section text, 50 blocks per message.
SECTION_CHARS = 3000
MAX_ANSWER_SECTIONS = 40
SOURCE_SNIPPET_CHARS = 150

# Private-use characters mark spans already converted, so later passes leave them alone.
_HOLD_OPEN, _HOLD_CLOSE = "\ue000", "\ue001"
_HELD = re.compile(f"{_HOLD_OPEN}(\\d+){_HOLD_CLOSE}")
_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]\n]+)\]\((\S+?)(?:\s+\"[^\"]*\")?\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]+)>")
_CITATION = re.compile(r"\[(\d{1,3})\]")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)
_QUOTE = re.compile(r"^&gt;", re.MULTILINE)


def escape(text: str) -> str:
    """Escape the three characters Slack reserves for its own markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str, citations: Sequence[Citation] = ()) -> str:
    """Convert the Markdown an LLM writes into Slack mrkdwn.

    Handles fenced and inline code (kept verbatim, escaped), links and images, headings, bold,
    italics, strikethrough, bullets and block quotes; ``&<>`` are escaped everywhere else.
    Citations ``[n]`` become links to their source's URL when ``citations`` gives one.
    """
    held: list[str] = []

    def hold(text: str) -> str:
        held.append(text)
        return f"{_HOLD_OPEN}{len(held) - 1}{_HOLD_CLOSE}"

    urls = {c.n: c.url for c in citations if c.url}
    text = _FENCE.sub(lambda m: hold(f"```\n{escape(m.group(1).strip(chr(10)))}\n```"), markdown)
    text = _INLINE_CODE.sub(lambda m: hold(f"`{escape(m.group(1))}`"), text)
    text = _IMAGE_OR_LINK.sub(lambda m: hold(_link(m.group(2), m.group(1))), text)
    text = _AUTOLINK.sub(lambda m: hold(f"<{escape(m.group(1))}>"), text)
    text = _CITATION.sub(lambda m: hold(_citation(int(m.group(1)), urls)), text)
    text = escape(text)
    text = _QUOTE.sub(">", text)  # a leading ">" is mrkdwn's block quote, keep it
    text = _HEADING.sub(lambda m: hold(f"*{m.group(1)}*"), text)
    text = _BOLD.sub(lambda m: hold(f"*{m.group(1) or m.group(2)}*"), text)
    text = _ITALIC.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    # Held spans may contain other held spans (a citation inside bold): expand until none remain.
    while _HELD.search(text):
        text = _HELD.sub(lambda m: held[int(m.group(1))], text)
    return text


def _link(url: str, label: str) -> str:
    if not re.match(r"(?i)^(https?|mailto):", url):
        return escape(label)  # relative or odd links cannot be opened from Slack
    return f"<{escape(url)}|{escape(label).replace('|', '¦')}>"


def _citation(n: int, urls: dict[int, str]) -> str:
    url = urls.get(n)
    return f"<{escape(url)}|[{n}]>" if url else f"[{n}]"


def plain_text(markdown: str, limit: int = 300) -> str:
    """A message's notification text: Markdown marks removed, links reduced to their label,
    on one line, at most ``limit`` characters."""
    text = _IMAGE_OR_LINK.sub(lambda m: m.group(1), markdown)
    text = re.sub(r"```[^\n`]*\n?|[*_~`]{1,3}(?=\S)|(?<=\S)[*_~`]{1,3}|^#{1,6}\s+|^>\s?", "",
                  text, flags=re.MULTILINE)
    return escape(_shorten(text, limit))


def split_sections(text: str, limit: int = SECTION_CHARS) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at a paragraph, line or word end
    outside any link ``<…>`` and code block, so each piece renders on its own. A code block
    longer than ``limit`` is cut anyway, and closed and reopened around the cut."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut_point(rest, limit)
        if cut is None:  # inside a code block too long for one piece
            line_end = rest.rfind("\n", 0, limit - 4)
            cut = line_end + 1 if line_end > 4 else limit - 4
            pieces.append(rest[:cut].rstrip("\n") + "\n```")
            rest = "```\n" + rest[cut:].lstrip("\n")
            continue
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _in_code(head: str) -> bool:
    return head.count("```") % 2 == 1


def _in_link(head: str) -> bool:
    return head.rfind("<") > head.rfind(">")


def _cut_point(text: str, limit: int) -> int | None:
    """The last good place to cut within ``limit``: a blank line, else a line end, else a space
    (each preferred in the second half of the window), never inside a link or code block.
    None: the only cuts left are inside a code block."""
    for floor in (limit // 2, 0):
        for separator in ("\n\n", "\n", " "):
            pos = text.rfind(separator, 0, limit)
            while pos > floor:
                head = text[:pos]
                if not _in_code(head) and not _in_link(head):
                    return pos
                pos = text.rfind(separator, 0, pos)
    return None if _in_code(text[:limit]) else limit


def answer_blocks(
    answer: Answer, answer_id: str, *, max_sources: int, wrong_source_button: bool = True
) -> list[Block]:
    """The whole answer message: notice, text, sources and feedback buttons."""
    blocks: list[Block] = []
    if answer.notice:
        blocks.append(_context(f":information_source: {escape(answer.notice)}"))
    body = to_mrkdwn(answer.text, answer.citations)
    for piece in split_sections(body)[:MAX_ANSWER_SECTIONS]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": piece}})
    return blocks + footer_blocks(
        answer, answer_id, max_sources=max_sources, wrong_source_button=wrong_source_button
    )


def footer_blocks(
    answer: Answer, answer_id: str, *, max_sources: int, wrong_source_button: bool = True
) -> list[Block]:
    """What follows the answer text: the sources list and the feedback buttons."""
    return sources_blocks(answer.citations[:max_sources]) + [
        feedback_block(answer_id, wrong_source_button=wrong_source_button)
    ]


def sources_blocks(citations: Sequence[Citation]) -> list[Block]:
    """A heading and one context line per source: number, linked title, snippet."""
    if not citations:
        return []
    blocks: list[Block] = [{"type": "divider"}, _context(texts.SOURCES_HEADING)]
    for c in citations:
        title = escape(c.title or texts.NO_LINK)
        if c.url:
            title = f"<{escape(c.url)}|{title.replace('|', '¦')}>"
        elif c.path:
            title = f"{title} (_{escape(PurePath(c.path).name)}_)"
        line = f"*[{c.n}]* {title}"
        if c.snippet:
            line += f"\n{escape(_shorten(c.snippet, SOURCE_SNIPPET_CHARS))}"
        blocks.append(_context(line))
    return blocks


def feedback_block(answer_id: str, *, wrong_source_button: bool = True) -> Block:
    """Helpful / not helpful (/ wrong source) buttons; each button's value is the answer id."""
    buttons = [
        _button(texts.BUTTON_HELPFUL, "helpful", answer_id, style="primary"),
        _button(texts.BUTTON_NOT_HELPFUL, "not_helpful", answer_id),
    ]
    if wrong_source_button:
        buttons.append(_button(texts.BUTTON_WRONG_SOURCE, "wrong_source", answer_id))
    return {"type": "actions", "block_id": FEEDBACK_BLOCK_ID, "elements": buttons}


def text_blocks(text: str) -> list[Block]:
    """A plain mrkdwn message (errors, help) as section blocks."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": piece}}
            for piece in split_sections(text)[:MAX_ANSWER_SECTIONS]]


def _button(label: str, rating: str, answer_id: str, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "action_id": FEEDBACK_ACTION_PREFIX + rating,
        "value": answer_id,
    }
    if style:
        button["style"] = style
    return button


def _context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def _shorten(text: str, limit: int) -> str:
    return snippet(text, limit)

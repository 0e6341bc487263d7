"""Answers as Slack messages: Markdown → mrkdwn, and the Block Kit of an answer; Slack's
limits, enforced in this one place.

An answer message is: an optional notice, the answer text (citations ``[n]`` linked to their
source), a sources list (title linked, short snippet) and the feedback buttons. The buttons carry
the answer's id; ``handlers.actions`` matches their ``action_id`` prefix.

Every block lorebot sends is built by the helpers here (:func:`section`, :func:`context`,
:func:`header`, :func:`button`, :func:`fit_blocks`), which cut what is too long with an ellipsis,
so any input (a 5,000-character title, a hundred sources) gives valid Block Kit. Text that comes
from users, documents or the LLM is escaped (:func:`escape`, :func:`stream_chunk`): ``&<>`` are
Slack's markup, so ``<!channel>`` or ``<@U…>`` written by anyone but lorebot never pings anyone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from bot.answer.pipeline import Answer, Citation, snippet
from bot.answer.quotes import cut_text
from handlers import texts
from handlers.texts import escape

__all__ = ["escape"]  # escape lives with the texts (which need it too); this is its home here

Block = dict[str, Any]

FEEDBACK_BLOCK_ID = "lorebot_feedback"
FEEDBACK_ACTION_PREFIX = "lorebot_feedback_"
# Slack's documented limits (https://docs.slack.dev/reference/block-kit/).
SECTION_CHARS = 3000  # a section's text
CONTEXT_TEXT_CHARS = 3000  # one text element of a context block
CONTEXT_ELEMENTS = 10
HEADER_CHARS = 150  # a header's plain text
BUTTON_TEXT_CHARS = 75
BUTTON_VALUE_CHARS = 2000
ACTION_ID_CHARS = 255
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100  # a Home tab or modal view
MESSAGE_TEXT_CHARS = 40_000  # a message's top-level text (Slack truncates beyond)
STREAM_TEXT_CHARS = 12_000  # markdown_text of chat.startStream / appendStream / stopStream
# Ours: how much of one source is shown under an answer.
SOURCE_SNIPPET_CHARS = 150
SOURCE_TITLE_CHARS = 200
MAX_SOURCES_SHOWN = 20
# A longer URL is shown as its title without a link (a link cannot be cut).
LINK_URL_CHARS = 2000
MAX_ANSWER_SECTIONS = 40
ELLIPSIS = "…"

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


def stream_chunk(text: str) -> str:
    """A piece of streamed answer text (``markdown_text`` of chat.startStream/appendStream),
    made safe: ``&<>`` escaped, so a ``<!channel>``, ``<!here>`` or ``<@U…>`` written by the LLM
    (or quoted from a document) is shown, not acted on. Character by character, so it is the
    same whether a mention arrives in one chunk or split over several."""
    return escape(text)


def stream_pieces(text: str, limit: int = STREAM_TEXT_CHARS) -> list[str]:
    """``text`` (already made safe) in pieces of at most ``limit`` characters, one per
    chat.appendStream call; cut at a line or word end when there is one, never inside an
    ``&…;`` escape."""
    pieces = []
    while len(text) > limit:
        cut = max(text.rfind("\n", limit // 2, limit), text.rfind(" ", limit // 2, limit))
        cut = cut + 1 if cut > 0 else len(cut_text(text, limit)) or limit
        amp = text.rfind("&", max(0, cut - 5), cut)
        if amp > 0 and ";" not in text[amp:cut]:
            cut = amp
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text] if text else pieces


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters with an ellipsis, never inside a link
    ``<…>`` or an ``&…;`` escape, and with a code block cut open closed again."""
    if len(text) <= limit:
        return text
    head = cut_text(text, max(0, limit - 5))
    lt = head.rfind("<")
    if lt > head.rfind(">"):
        head = head[:lt]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    head = head.rstrip() + ELLIPSIS
    return head + "\n```" if _in_code(head) else head


def clip_plain(text: str, limit: int) -> str:
    """Plain text (no markup) cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else cut_text(text, limit - 1).rstrip() + ELLIPSIS


def section(mrkdwn: str, accessory: Block | None = None) -> Block:
    """A section block; text over Slack's 3000 characters is cut (an empty text is refused by
    Slack, so it becomes an ellipsis)."""
    block: Block = {"type": "section",
                    "text": {"type": "mrkdwn", "text": clip(mrkdwn, SECTION_CHARS) or ELLIPSIS}}
    if accessory is not None:
        block["accessory"] = accessory
    return block


def context(*mrkdwn: str) -> Block:
    """A context block of up to ten mrkdwn elements (more are dropped), each cut to 3000."""
    elements = [{"type": "mrkdwn", "text": clip(m, CONTEXT_TEXT_CHARS) or ELLIPSIS}
                for m in mrkdwn[:CONTEXT_ELEMENTS]]
    return {"type": "context", "elements": elements}


def header(text: str) -> Block:
    """A header block (plain text, at most 150 characters)."""
    return {"type": "header",
            "text": {"type": "plain_text", "text": clip_plain(text, HEADER_CHARS) or ELLIPSIS}}


def button(label: str, action_id: str, value: str, *, style: str | None = None) -> Block:
    """A button. The label is cut to 75 characters; a value that does not fit is a bug (a
    value cut short would name something else), so it raises."""
    if len(value) > BUTTON_VALUE_CHARS or len(action_id) > ACTION_ID_CHARS:
        raise ValueError(f"button value or action_id too long for Slack ({len(value)} chars)")
    element: Block = {"type": "button", "action_id": action_id, "value": value,
                      "text": {"type": "plain_text", "text": clip_plain(label, BUTTON_TEXT_CHARS),
                               "emoji": True}}
    if style:
        element["style"] = style
    return element


def fit_blocks(blocks: list[Block], limit: int = MESSAGE_BLOCKS, *,
               keep_last: int = 0) -> list[Block]:
    """``blocks`` within Slack's block limit: when there are too many, the middle is replaced
    by a line saying how many were left out; the last ``keep_last`` blocks (buttons) stay."""
    if len(blocks) <= limit:
        return blocks
    tail = blocks[len(blocks) - keep_last:] if keep_last else []
    head = blocks[:limit - 1 - len(tail)]
    left_out = len(blocks) - len(head) - len(tail)
    return [*head, context(texts.more_not_shown(left_out)), *tail]


def fit_lines(lines: list[str], limit: int = MESSAGE_TEXT_CHARS) -> str:
    """Lines joined into one message text of at most ``limit`` characters; when they do not
    all fit, the last line says how many were left out."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    size = 0
    for n, line in enumerate(lines):
        tail = texts.more_not_shown(len(lines) - n)
        if size + len(line) + len(tail) + 2 > limit:
            return "\n".join([*kept, tail])
        kept.append(line)
        size += len(line) + 1
    return text  # pragma: no cover - the whole text would have fitted


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
    # An autolink shows its URL: a "|label" inside it would let the text disguise the link.
    text = _AUTOLINK.sub(lambda m: hold(f"<{escape(m.group(1)).replace('|', '%7C')}>"), text)
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
    # Relative or odd links cannot be opened from Slack, and an overlong one cannot be cut.
    if not re.match(r"(?i)^(https?|mailto):", url) or len(url) > LINK_URL_CHARS:
        return escape(clip_plain(label, SOURCE_TITLE_CHARS))
    return f"<{escape(url).replace('|', '%7C')}|{escape(label).replace('|', '¦')}>"


def _citation(n: int, urls: dict[int, str]) -> str:
    url = urls.get(n)
    return _link(url, f"[{n}]") if url else f"[{n}]"


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
        if floor:
            # Chinese has no spaces: a cut between its characters beats one at an early space.
            pos = len(cut_text(text, limit))
            if pos > floor and not _in_code(text[:pos]) and not _in_link(text[:pos]):
                return pos
    return None if _in_code(text[:limit]) else len(cut_text(text, limit)) or limit


def answer_blocks(
    answer: Answer, answer_id: str, *, max_sources: int, wrong_source_button: bool = True
) -> list[Block]:
    """The whole answer message: notice, text, sources and feedback buttons, in at most 50
    blocks (an answer too long for them is cut, and says so)."""
    head = [context(f":information_source: {escape(answer.notice)}")] if answer.notice else []
    footer = footer_blocks(answer, answer_id, max_sources=max_sources,
                           wrong_source_button=wrong_source_button)
    room = min(MAX_ANSWER_SECTIONS, MESSAGE_BLOCKS - len(head) - len(footer))
    return head + body_blocks(to_mrkdwn(answer.text, answer.citations), room) + footer


def body_blocks(mrkdwn: str, room: int = MAX_ANSWER_SECTIONS) -> list[Block]:
    """``mrkdwn`` as section blocks, at most ``room`` of them: what does not fit is cut at the
    end of the last one, with a note that the rest is not shown."""
    pieces = split_sections(mrkdwn) or [ELLIPSIS]
    if len(pieces) > room:
        note = texts.ANSWER_CUT
        pieces = pieces[:room]
        pieces[-1] = clip(pieces[-1], SECTION_CHARS - len(note) - 2) + "\n" + note
    return [section(piece) for piece in pieces]


def footer_blocks(
    answer: Answer, answer_id: str, *, max_sources: int, wrong_source_button: bool = True
) -> list[Block]:
    """What follows the answer text: the sources list and the feedback buttons."""
    shown = answer.citations[:min(max_sources, MAX_SOURCES_SHOWN)]
    return sources_blocks(shown) + [
        feedback_block(answer_id, wrong_source_button=wrong_source_button)
    ]


def source_link(title: str, url: str | None) -> str:
    """A document's title, escaped and cut, linked to ``url`` when it has a usable one."""
    label = escape(clip_plain(title, SOURCE_TITLE_CHARS)).replace("|", "¦")
    if url and len(url) <= LINK_URL_CHARS and re.match(r"(?i)^(https?|mailto):", url):
        return f"<{escape(url).replace('|', '%7C')}|{label}>"
    return label


def sources_blocks(citations: Sequence[Citation]) -> list[Block]:
    """A heading and one context line per source: number, linked title, snippet."""
    if not citations:
        return []
    blocks: list[Block] = [{"type": "divider"}, context(texts.SOURCES_HEADING)]
    for c in citations:
        title = source_link(c.title or texts.NO_LINK, c.url)
        if not c.url and c.path:
            name = clip_plain(PurePath(c.path).name, SOURCE_TITLE_CHARS)
            title = f"{title} (_{escape(name)}_)"
        line = f"*[{c.n}]* {title}"
        if c.snippet:
            line += f"\n{escape(_shorten(c.snippet, SOURCE_SNIPPET_CHARS))}"
        blocks.append(context(line))
    return blocks


def feedback_block(answer_id: str, *, wrong_source_button: bool = True) -> Block:
    """Helpful / not helpful (/ wrong source) buttons; each button's value is the answer id."""
    buttons = [
        button(texts.BUTTON_HELPFUL, FEEDBACK_ACTION_PREFIX + "helpful", answer_id,
               style="primary"),
        button(texts.BUTTON_NOT_HELPFUL, FEEDBACK_ACTION_PREFIX + "not_helpful", answer_id),
    ]
    if wrong_source_button:
        buttons.append(button(texts.BUTTON_WRONG_SOURCE, FEEDBACK_ACTION_PREFIX + "wrong_source",
                              answer_id))
    return {"type": "actions", "block_id": FEEDBACK_BLOCK_ID, "elements": buttons}


def text_blocks(text: str) -> list[Block]:
    """A plain mrkdwn message (errors, help) as section blocks, within the block limit."""
    return body_blocks(text, MESSAGE_BLOCKS)


def shown(text: str, limit: int = 300) -> str:
    """A location, name or error as shown in a listing: escaped, on one line, cut to at most
    ``limit`` characters (never inside an escape)."""
    return clip(escape(" ".join(str(text).split())), limit)


def _shorten(text: str, limit: int) -> str:
    return snippet(text, limit)

"""Cutting passages for display: a one-line snippet, and a quote on sentence boundaries that
starts where the query's key terms are."""

from __future__ import annotations

import re
from collections.abc import Sequence

# A quote in an extractive answer is about this long.
QUOTE_CHARS = 320
# Snippets under sources are cut to this many characters.
SNIPPET_CHARS = 200


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of ``text`` on one line, cut at a word boundary within ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


# Sentence ends: after . ! ? followed by blanks, after CJK full stops, and at line breaks (a
# Markdown list item or heading is a "sentence" of its own).
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")
_WORD = re.compile(r"\w+", re.UNICODE)
_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)


def quote_passage(text: str, terms: Sequence[str] = (), limit: int = QUOTE_CHARS) -> str:
    """A quote of about ``limit`` characters from ``text``, on sentence boundaries.

    A passage that fits is quoted whole. Otherwise the quote starts at the sentence sharing most
    key ``terms`` with the query (the first sentence on a tie) and takes whole sentences while
    they fit; "…" marks text left out. A single over-long sentence is cut at a word boundary.
    """
    # A fenced code block becomes one inline code span: a quote is a single line.
    text = _FENCE.sub(lambda m: f" `{' '.join(m.group(1).split())}` ", text)
    sentences = [" ".join(s.split()) for s in _SENTENCE_SPLIT.split(text)]
    sentences = [s for s in sentences if s]
    if not sentences:
        return ""
    whole = " ".join(sentences)
    if len(whole) <= limit:
        return whole
    wanted = {t.lower() for t in terms}
    scores = [len(wanted & {w.lower() for w in _WORD.findall(s)}) for s in sentences]
    start = scores.index(max(scores))
    taken: list[str] = []
    length = 0
    for sentence in sentences[start:]:
        extra = len(sentence) + (1 if taken else 0)
        if length + extra > limit:
            break
        taken.append(sentence)
        length += extra
    if not taken:
        quote = snippet(sentences[start], limit).removesuffix("…")
        taken_all = False
    else:
        quote = " ".join(taken)
        taken_all = start + len(taken) == len(sentences)
    prefix = "… " if start > 0 else ""
    suffix = "" if taken_all else " …"
    return f"{prefix}{quote}{suffix}"

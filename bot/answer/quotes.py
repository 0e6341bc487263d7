"""Cutting passages for display: a one-line snippet, and a quote on sentence boundaries that
starts where the query's key terms are."""

from __future__ import annotations

import re
from collections.abc import Sequence

import regex

from search.text import CJK_RUN, segment_cjk

# One user-perceived character (Unicode extended grapheme cluster, via the maintained `regex`).
_GRAPHEME = regex.compile(r"\X", regex.DOTALL)

# A quote in an extractive answer is about this long.
QUOTE_CHARS = 320
# Snippets under sources are cut to this many characters.
SNIPPET_CHARS = 200


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of ``text`` on one line, cut at a word boundary within ``limit`` characters
    (an ellipsis included)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return cut_text(flat, limit - 1).rstrip(" ,;:，；：、") + "…"


# Characters after which a line may break: CJK text has no spaces, so between two of its
# characters (or after its punctuation) is a boundary too, not only a blank.
_BREAK_AFTER = re.compile(r"[\s\u3000-\u303f\uff01-\uff0f\uff1a-\uff1f]")


def cut_text(text: str, limit: int) -> str:
    """The longest start of ``text`` of at most ``limit`` characters that ends on a boundary.

    A boundary is a blank, or anywhere next to a CJK character or CJK punctuation; failing one in
    the second half, any place between two user-perceived characters (grapheme clusters: never
    inside a surrogate pair, an emoji sequence or before a combining mark). So a cut looking for
    a space never swallows a whole Chinese passage, and never splits a character.
    """
    if len(text) <= limit:
        return text
    graphemes = _GRAPHEME.findall(text[: limit + 8])  # a cluster can straddle the limit
    ends, length = [], 0
    for g in graphemes:
        if length + len(g) > limit:
            break
        length += len(g)
        ends.append(length)
    if not ends:
        return ""
    for end in reversed(ends):
        if end <= limit // 2:
            break
        before, after = text[end - 1], text[end] if end < len(text) else " "
        if (after.isspace() or _BREAK_AFTER.match(before) or CJK_RUN.match(before)
                or CJK_RUN.match(after)):
            return text[:end].rstrip()
    return text[: ends[-1]]


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
    # Chinese terms and sentences are compared by bigram, as BM25 sees them: a CJK "word" found
    # by \w+ is a whole clause, which never equals a query term.
    wanted = _words(" ".join(terms))
    scores = [len(wanted & _words(s)) for s in sentences]
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


def _words(text: str) -> set[str]:
    """Lower-case words of ``text``, CJK runs as their bigrams."""
    return {w.lower() for w in _WORD.findall(segment_cjk(text))}

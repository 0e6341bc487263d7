"""Free text to an FTS5 MATCH expression that FTS5 always accepts (no syntax errors, ever)."""

from __future__ import annotations

import unicodedata

from search.text import segment_cjk

# English function words carry no topic; a query made only of them keeps them (see below).
# Question words are here because people ask the bot questions ("how do I rotate the key?").
STOP_WORDS = frozenset(
    """
    a an and are as at be been but by can could did do does for from had has have how i if in
    into is it its me my no not of on or our should so such than that the their them then there
    these they this to us was we were what when where which who whom why will with would you your
    """.split()
)

# A pasted paragraph should not become a 500-way OR: the first distinct terms carry the question.
MAX_QUERY_TERMS = 64


def _is_word_char(ch: str) -> bool:
    # Letters, digits, marks and private-use characters: what FTS5's unicode61 treats as token
    # characters (marks stay attached so scripts like Devanagari keep whole words).
    category = unicodedata.category(ch)
    return category[0] in "LNM" or category == "Co"


def query_words(text: str) -> list[str]:
    """The words of a free-text query, CJK runs already split into bigrams."""
    return split_words(segment_cjk(text))


def split_words(text: str) -> list[str]:
    """Runs of word characters; a run of combining marks alone is no word."""
    words: list[str] = []
    current: list[str] = []
    for ch in text:
        if _is_word_char(ch):
            current.append(ch)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return [w for w in words if any(unicodedata.category(c)[0] in "LN" for c in w)]


def fts_query(text: str) -> str | None:
    """A safe FTS5 MATCH expression for ``text``: its distinct words, each quoted, OR-ed.

    Quoting every word neutralises FTS5 syntax (``AND``/``OR``/``NOT``/``NEAR``, ``*``, ``^``,
    ``:``, parentheses) and punctuation never reaches FTS5 at all, so no input can raise a syntax
    error. Stop words are dropped unless the query has nothing else. ``None`` means nothing is
    left to search for.
    """
    words = query_words(text)
    if not words:
        return None
    content = [w for w in words if w.lower() not in STOP_WORDS] or words
    # Words stay as typed (FTS5 folds case itself; str.casefold would turn "ß" into "ss", which
    # FTS5 does not); repeats count once.
    distinct: dict[str, str] = {}
    for word in content:
        distinct.setdefault(word.lower(), word)
    terms = list(distinct.values())[:MAX_QUERY_TERMS]
    # Words hold no double quotes (punctuation was dropped), but escape anyway: it costs nothing.
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in terms)


"""Keyword evidence: how much of a question a passage's words cover.

Used by the answer pipeline instead of cosine similarity when the dense side is known to be weak
for the question's language (search.fusion_weights): all-MiniLM-L6-v2 scores a Chinese question
against its own Chinese answer about as low as against an unrelated passage, so a similarity
threshold would refuse good matches, or pass anything if lowered. Whether the passage contains
the question's content words is language-neutral and cheap.

Chinese has no spaces, so its words are approximated as in BM25 (search.text): a content
character counts as covered when one of the two bigrams it is part of occurs in the passage.
"""

from __future__ import annotations

import re

from search.text import CJK_RUN

# Function characters of questions ("how", "what", particles, pronouns): a passage sharing only
# these with the question shares nothing. Content words are everything else.
_CJK_FUNCTION = frozenset(
    "的了吗呢吧啊呀么把被在是有我你他她它们这那哪怎什如何为啥可以能会要应该请问和与或及对给从"
    "到个些一就都也还吗么得地着过该需"
)
_LATIN_WORD = re.compile(r"[^\W\d_]{3,}|\d+[^\W_]*", re.UNICODE)
_LATIN_STOPWORDS = frozenset(
    "the and for with how what when where which who why can could should would does did "
    "are was were has have this that from into about your you our there their them"
    .split()
)
# A Latin key word weighs as much as a two-character Chinese word.
_LATIN_WEIGHT = 2


def keyword_coverage(question: str, passage: str) -> float:
    """Share (0..1) of the question's content that occurs in ``passage``; 1.0 for a question
    without content words (nothing to check, so nothing argues against the passage)."""
    haystack = passage.lower()
    total = covered = 0
    for run in CJK_RUN.finditer(question):
        chars = run.group()
        for i, char in enumerate(chars):
            if char in _CJK_FUNCTION:
                continue
            total += 1
            left = chars[i - 1 : i + 1] if i > 0 else ""
            right = chars[i : i + 2] if i + 1 < len(chars) else ""
            if len(chars) == 1:
                covered += char in haystack
            elif (left and left in haystack) or (right and right in haystack):
                covered += 1
    for word in _LATIN_WORD.findall(CJK_RUN.sub(" ", question)):
        word = word.lower()
        if word in _LATIN_STOPWORDS:
            continue
        total += _LATIN_WEIGHT
        covered += _LATIN_WEIGHT if word in haystack else 0
    return covered / total if total else 1.0

"""Conversation memory and follow-up handling.

A conversation (a Slack thread, a terminal chat session) is a list of :class:`Turn`, kept by a
:class:`ConversationStore` under a key the caller chooses. A follow-up such as "and on Windows?"
is a poor search query on its own, so :func:`standalone_query` turns it into one before retrieval.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from bot.answer.llm import LLM, LLMError
from bot.answer.prompts import CountTokens, build_rewrite_messages, estimate_tokens
from bot.answer.turns import Turn
from bot.settings import LLMSettings

logger = logging.getLogger(__name__)

# Heuristic rewrite (no LLM): a follow-up of at most this many words borrows up to
# _MAX_BORROWED_TERMS key terms from the previous question.
SHORT_FOLLOWUP_WORDS = 6
_MAX_BORROWED_TERMS = 8
_MAX_QUERY_CHARS = 500
_REWRITE_MAX_TOKENS = 120
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    """a about after all also an and any are as at be been before but by can could did do does
    doing for from had has have how i if in into is it its just me more most my no not of on or
    our out over should so some than that the their them then there these they this those to too
    under up us was we were what when where which while who whom why will with would you your
    please tell explain show give know need want get use using""".split()
)


async def standalone_query(
    question: str,
    history: Sequence[Turn],
    llm: LLM | None,
    settings: LLMSettings,
    count_tokens: CountTokens = estimate_tokens,
) -> str:
    """The search query for ``question`` given the conversation so far.

    - No history, ``settings.rewrite_followups`` off or ``history_tokens`` 0: ``question``.
    - With an LLM: the model rewrites the follow-up into one standalone query from the recent
      turns (trimmed to ``settings.history_tokens``, newest kept). If the call fails or returns
      nothing usable, the heuristic below is used instead: a failed rewrite must not fail the
      answer.
    - Without an LLM: :func:`heuristic_query`.
    """
    if not history or not settings.rewrite_followups or settings.history_tokens <= 0:
        return question
    if llm is None:
        return heuristic_query(question, history)
    messages = build_rewrite_messages(question, history, settings.history_tokens, count_tokens)
    try:
        rewritten = clean_rewrite(
            await llm.complete(messages, temperature=0.0, max_tokens=_REWRITE_MAX_TOKENS)
        )
    except LLMError as exc:
        logger.warning("Follow-up rewrite failed, using the heuristic: %s", exc)
        return heuristic_query(question, history)
    if not rewritten:
        return heuristic_query(question, history)
    logger.debug("Rewrote follow-up %r as %r", question, rewritten)
    return rewritten


def heuristic_query(question: str, history: Sequence[Turn]) -> str:
    """Without an LLM: prepend the previous question's key terms to a short follow-up.

    A follow-up of at most :data:`SHORT_FOLLOWUP_WORDS` words ("and on Windows?") usually leans on
    the previous question, so its content words (not stopwords, at least 3 characters, not
    already in the follow-up; at most 8) are put in front: "install lorebot and on Windows?".
    Longer follow-ups are taken to stand on their own and returned unchanged.
    """
    if not history or len(_WORD.findall(question)) > SHORT_FOLLOWUP_WORDS:
        return question
    present = {w.lower() for w in _WORD.findall(question)}
    terms = [t for t in key_terms(history[-1].question) if t.lower() not in present]
    terms = terms[:_MAX_BORROWED_TERMS]
    return f"{' '.join(terms)} {question}" if terms else question


def key_terms(text: str) -> list[str]:
    """Content words of ``text`` in order, once each: no stopwords, no ASCII words under 3 chars."""
    seen: set[str] = set()
    terms: list[str] = []
    for word in _WORD.findall(text):
        lower = word.lower()
        if lower in STOPWORDS or lower in seen or (len(word) < 3 and word.isascii()):
            continue
        seen.add(lower)
        terms.append(word)
    return terms


def clean_rewrite(text: str) -> str:
    """The query from a rewrite reply: its first non-empty line, without a label or quotes."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^(?:standalone\s+)?(?:search\s+)?query\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("\"'`“”‘’").strip()
    return line[:_MAX_QUERY_CHARS]

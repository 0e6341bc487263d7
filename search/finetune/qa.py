"""Synthetic question/answer pairs: parsing the model's replies, filtering, and training pairs.

An LLM writes questions about a chunk (``lorebot qa generate``); this module decides which of
them are worth training on. A question is dropped when it is

* *malformed*: not an object with a question string;
* *trivial*: a keyword or a few words, or mostly a run of words copied from the chunk (a
  retriever learns nothing from matching a sentence against itself);
* *unanswerable*: the model says so, gave no answer, or its answer shares too few words with
  the chunk (an answer the chunk does not support makes the chunk a false positive);
* a *duplicate*: the same normalised text as a question kept before, from any chunk.

Pure functions only: the LLM calls and files live in ``bot.training.qa``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from search.finetune.data import FeedbackPairs, source_key
from search.text import segment_cjk

# A question needs this many tokens (words, or CJK bigrams) to be more than a keyword.
MIN_QUESTION_TOKENS = 3
# Share of the question's tokens that may be one run copied from the chunk.
MAX_COPIED_SHARE = 0.8
# Share of the answer's tokens that must occur in the chunk.
MIN_ANSWER_OVERLAP = 0.5
DROP_REASONS = ("malformed", "trivial", "unanswerable", "duplicate")

_TOKEN = re.compile(r"[^\W_]+")
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)
_FALSE = {"false", "no", "0", "unanswerable", "not answerable"}


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, CJK as bigrams; a plural "s" is dropped so "files" meets "file"."""
    out = []
    for tok in _TOKEN.findall(segment_cjk(unicodedata.normalize("NFKC", text)).lower()):
        if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss"):
            tok = tok[:-1]
        out.append(tok)
    return out


def normalise(text: str) -> str:
    """The text duplicates are compared on: case, punctuation and spacing do not count."""
    return " ".join(tokens(text))


def parse_reply(text: str) -> list | None:
    """The items of a reply that should be JSON: ``{"questions": [...]}`` or a bare list, also
    inside a Markdown code fence or after a sentence of prose. None when there is no JSON."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    data = _loads(text)
    if data is None:  # prose around the JSON: try the outermost object, then the outermost list
        for open_, close in (("{", "}"), ("[", "]")):
            start, end = text.find(open_), text.rfind(close)
            if 0 <= start < end and (data := _loads(text[start: end + 1])) is not None:
                break
    if isinstance(data, dict):
        for key in ("questions", "items", "pairs", "qa"):
            if isinstance(data.get(key), list):
                return data[key]
        return [data] if "question" in data else None
    return data if isinstance(data, list) else None


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def longest_copied_run(question: list[str], chunk: list[str]) -> int:
    """Length of the longest run of consecutive question tokens that the chunk also has in a row."""
    best = 0
    prev = [0] * (len(chunk) + 1)
    for a in question:
        cur = [0] * (len(chunk) + 1)
        for j, b in enumerate(chunk, start=1):
            if a == b:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best = cur[j]
        prev = cur
    return best


@dataclass
class QAFilter:
    """Judges candidate questions one chunk at a time; remembers kept questions across chunks."""

    min_question_tokens: int = MIN_QUESTION_TOKENS
    max_copied_share: float = MAX_COPIED_SHARE
    min_answer_overlap: float = MIN_ANSWER_OVERLAP
    seen: set[str] = field(default_factory=set)
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def judge(self, item: object, chunk_text: str) -> tuple[str, str] | None:
        """``(question, answer)`` when ``item`` is kept, else None (the reason is counted)."""
        reason, pair = self._why(item, chunk_text)
        if reason is not None:
            self.dropped[reason] += 1
            return None
        return pair

    def _why(self, item: object, chunk_text: str) -> tuple[str | None, tuple[str, str]]:
        if not isinstance(item, Mapping) or not isinstance(item.get("question"), str):
            return "malformed", ("", "")
        question = " ".join(item["question"].split())
        answer = item.get("answer")
        answer = " ".join(answer.split()) if isinstance(answer, str) else ""
        q_tokens = tokens(question)
        chunk_tokens = tokens(chunk_text)
        if len(q_tokens) < self.min_question_tokens:
            return "trivial", (question, answer)
        if longest_copied_run(q_tokens, chunk_tokens) >= self.max_copied_share * len(q_tokens):
            return "trivial", (question, answer)
        if str(item.get("answerable", True)).strip().lower() in _FALSE or not answer:
            return "unanswerable", (question, answer)
        a_tokens = tokens(answer)
        known = set(chunk_tokens)
        supported = sum(t in known for t in a_tokens)
        if not a_tokens or supported < self.min_answer_overlap * len(a_tokens):
            return "unanswerable", (question, answer)
        key = normalise(question)
        if key in self.seen:
            return "duplicate", (question, answer)
        self.seen.add(key)
        return None, (question, answer)


def qa_id(question: str) -> str:
    """A stable query id for a generated question (``qa-`` + a hash of its text)."""
    return "qa-" + hashlib.sha256(question.encode()).hexdigest()[:12]


def qa_pairs(records: Iterable[Mapping]) -> FeedbackPairs:
    """Generated pairs (``qa.jsonl``) as training pairs: the chunk's document is the positive,
    keyed like a cited source (path, else URL, else title), so feedback and generated questions
    mine, split and validate the same way."""
    queries: dict[str, str] = {}
    positives: dict[str, set[str]] = {}
    for rec in records:
        question = (rec.get("question") or "").strip()
        key = source_key(rec)
        if not question or not key:
            continue
        qid = qa_id(question)
        queries[qid] = question
        positives.setdefault(qid, set()).add(key)
    return FeedbackPairs(queries, positives, {})


def merge_pairs(*parts: FeedbackPairs) -> FeedbackPairs:
    """One set of pairs from several (query ids are prefixed by origin, so they never clash)."""
    queries: dict[str, str] = {}
    positives: dict[str, set[str]] = {}
    negatives: dict[str, set[str]] = {}
    for p in parts:
        queries.update(p.queries)
        for target, source in ((positives, p.positives), (negatives, p.negatives)):
            for qid, keys in source.items():
                target.setdefault(qid, set()).update(keys)
    return FeedbackPairs(queries, positives, negatives)

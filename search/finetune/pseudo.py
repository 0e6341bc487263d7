"""Training questions without a language model: pseudo-questions from the knowledge base itself.

A team without an LLM key still has its documents. Two kinds of pseudo-question, each paired with
the chunk it came from (its document is the positive, as for generated questions):

* ``title``: the chunk's nearest heading, else its document's title, asks for the chunk (one
  question per distinct heading of a document: a title shared by every chunk of a long document
  says nothing about which chunk answers it);
* ``sentence``: one sentence of the chunk, drawn by a seeded generator, asks for the rest of its
  passage (the inverse cloze task of Lee et al., 2019): a sentence reads like a statement someone
  searches with, and every chunk has several, so even a wiki of untitled pages yields questions.

Which kind is the default was decided by a measurement (README, *Fine-tuning*); the gate decides
whether training on them helped. Pure functions: the index reading and files live in
``bot.training.qa``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

from search.finetune.qa import qa_id

KINDS = ("sentence", "title", "both")
# A sentence of this many words is a usable question: shorter ones are fragments or labels,
# longer ones paste half the passage into the query.
MIN_WORDS, MAX_WORDS = 6, 40
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` that are usable as questions (MIN_WORDS..MAX_WORDS words)."""
    out = []
    for part in _SENTENCE_END.split(" ".join(text.split())):
        words = len(part.split())
        if MIN_WORDS <= words <= MAX_WORDS:
            out.append(part.strip())
    return out


def pseudo_questions(chunks: Iterable, *, kind: str = "sentence", seed: int = 13,
                     per_chunk: int = 1) -> list[dict]:
    """qa.jsonl records for ``chunks`` (objects with chunk_id, doc_id, source, title, path, url,
    headings, text): ``question``, an empty ``answer``, the chunk's ids and location, and
    ``how`` (title or sentence). Duplicate questions are kept once (the first chunk's)."""
    if kind not in KINDS:
        raise ValueError(f"pseudo-question kind must be one of {', '.join(KINDS)}, not {kind!r}")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[dict] = []
    for chunk in chunks:
        picked: list[tuple[str, str]] = []
        if kind in ("title", "both"):
            heading = (chunk.headings[-1] if chunk.headings else chunk.title or "").strip()
            if len(heading.split()) >= 2:
                picked.append(("title", heading))
        if kind in ("sentence", "both"):
            found = sentences(chunk.text)
            picked += [("sentence", s) for s in rng.sample(found, min(per_chunk, len(found)))]
        for how, question in picked:
            key = " ".join(question.lower().split())
            if key in seen:
                continue
            seen.add(key)
            out.append({"id": qa_id(question), "question": question, "answer": "", "how": how,
                        "chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id,
                        "source": chunk.source, "title": chunk.title, "path": chunk.path,
                        "url": chunk.url})
    return out


def by_kind(records: Sequence[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec.get("how", "llm")] = counts.get(rec.get("how", "llm"), 0) + 1
    return counts

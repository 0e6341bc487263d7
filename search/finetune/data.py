"""Training examples: a document-disjoint train/validation split, feedback pairs, mined negatives.

An *example* is one query with the passages known to answer it (positives) and passages that look
relevant but are not (hard negatives). Validation must be about documents the model never saw as
positives, so queries are split by their relevant documents: queries that share a relevant
document always land on the same side (connected components of the query-document graph).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from search.models import Hit, hit_text


@dataclass(frozen=True)
class Passage:
    """A passage as the retriever shows it: text for the cross-encoder, ids for vector lookup."""

    doc_id: str
    text: str
    chunk_id: str | None = None


@dataclass
class Example:
    """One training query with its positive and hard-negative passages; ``others``: the rest of
    the retriever's hits for it (one passage per document, best first), neither positive nor
    kept as a hard negative."""

    qid: str
    query: str
    positive_docs: set[str]
    positives: list[Passage] = field(default_factory=list)
    negatives: list[Passage] = field(default_factory=list)
    others: list[Passage] = field(default_factory=list)


@dataclass(frozen=True)
class Split:
    """Query ids on each side; ``train_docs`` and ``val_docs`` are disjoint by construction."""

    train: list[str]
    validation: list[str]
    train_docs: frozenset[str]
    val_docs: frozenset[str]


def split_by_document(
    qrels: Mapping[str, Mapping[str, float]], *, val_fraction: float = 0.2, seed: int = 13
) -> Split:
    """Split judged queries so no relevant document appears on both sides.

    Components (queries linked through shared relevant documents) are assigned whole, in an order
    fixed by a seeded hash, until the validation side holds ``val_fraction`` of the queries.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), not {val_fraction}")
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    judged = {q: [d for d, g in docs.items() if g > 0] for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    for qid, docs in judged.items():
        for doc in docs:
            union("q:" + qid, "d:" + doc)
    components: dict[str, list[str]] = {}
    for qid in judged:
        components.setdefault(find("q:" + qid), []).append(qid)

    def order(root: str) -> str:
        return hashlib.sha256(f"{seed}:{root}".encode()).hexdigest()

    target = round(len(judged) * val_fraction)
    val: list[str] = []
    train: list[str] = []
    for root in sorted(components, key=order):
        (val if len(val) < target else train).extend(components[root])
    keep = list(judged)  # report queries in their original order
    val_set = set(val)
    train_ids = [q for q in keep if q not in val_set]
    val_ids = [q for q in keep if q in val_set]
    return Split(
        train_ids, val_ids,
        frozenset(d for q in train_ids for d in judged[q]),
        frozenset(d for q in val_ids for d in judged[q]),
    )


@dataclass(frozen=True)
class GateSplit:
    """The gate's two questions and what is left to train on.

    ``guard``: queries about documents no other query here is about (:func:`split_by_document`):
    does the candidate do no harm on new documents? ``heldout``: a seeded random share of the
    rest, not split by document: new questions about the same knowledge base, the way a team
    keeps asking. ``train``: everything else. The split depends only on the judged queries and
    the seed, so every model of a stack trained on the same data holds out the same queries.
    """

    train: list[str]
    heldout: list[str]
    guard: list[str]
    guard_docs: frozenset[str] = frozenset()


def split_for_gate(
    qrels: Mapping[str, Mapping[str, float]], *, guard_fraction: float = 0.2,
    heldout_fraction: float = 0.2, seed: int = 13,
) -> GateSplit:
    """``guard_fraction`` of the judged queries split off by document, then ``heldout_fraction``
    of the rest drawn at random (a seeded hash of the query id orders them)."""
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in (0, 1), not {heldout_fraction}")
    by_doc = split_by_document(qrels, val_fraction=guard_fraction, seed=seed)
    rest = by_doc.train
    drawn = set(sorted(rest, key=lambda q: hashlib.sha256(f"{seed}:h:{q}".encode()).hexdigest())
                [: round(len(rest) * heldout_fraction)])
    return GateSplit([q for q in rest if q not in drawn], [q for q in rest if q in drawn],
                     by_doc.validation, by_doc.val_docs)


Search = Callable[[str], Awaitable[list[Hit]]]


def passage_of(hit: Hit) -> Passage:
    return Passage(hit.doc_id, hit_text(hit), hit.chunk_id)


async def mine_examples(
    search: Search,
    queries: Mapping[str, str],
    positives: Mapping[str, Iterable[str]],
    *,
    negatives: int = 4,
    skip_top: int = 0,
    fallback_text: Callable[[str], Passage | None] | None = None,
    known_negatives: Mapping[str, Iterable[str]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Example]:
    """Hard negatives from the current index: the retriever's top hits minus the positives.

    ``search(query)`` returns hits best first (the hybrid retriever). Positive passages are the
    best-ranked chunk of each relevant document among the hits, else ``fallback_text(doc_id)``.
    ``known_negatives`` (documents users marked as wrong sources) come first among negatives.
    """
    examples: list[Example] = []
    for n, (qid, query) in enumerate(queries.items(), start=1):
        pos_docs = set(positives.get(qid, ()))
        hits = await search(query)
        best: dict[str, Hit] = {}
        for hit in hits:
            best.setdefault(hit.doc_id, hit)
        ex = Example(qid, query, pos_docs)
        for doc in sorted(pos_docs):
            if doc in best:
                ex.positives.append(passage_of(best[doc]))
            elif fallback_text is not None and (p := fallback_text(doc)) is not None:
                ex.positives.append(p)
        wrong = list(dict.fromkeys((known_negatives or {}).get(qid, ())))
        for doc in wrong:
            if doc in best and doc not in pos_docs:
                ex.negatives.append(passage_of(best[doc]))
        seen = {p.doc_id for p in ex.negatives} | pos_docs
        ranked = [h for h in best.values() if h.doc_id not in seen][skip_top:]
        keep = max(0, negatives - len(ex.negatives))
        ex.negatives += [passage_of(hit) for hit in ranked[:keep]]
        ex.others = [passage_of(hit) for hit in ranked[keep:]]
        if ex.positives:
            examples.append(ex)
        if progress is not None:
            progress(n, len(queries))
    return examples


@dataclass(frozen=True)
class FeedbackPairs:
    """Queries from feedback with the source keys users judged (see :func:`feedback_pairs`)."""

    queries: dict[str, str]
    positives: dict[str, set[str]]
    negatives: dict[str, set[str]]


def source_key(ref: Mapping) -> str | None:
    """How a cited source is matched to hits: its path, else its URL, else its title."""
    return ref.get("path") or ref.get("url") or ref.get("title") or None


def hit_key(hit: Hit) -> str | None:
    return hit.path or hit.url or hit.title or None


def feedback_pairs(records: Iterable[Mapping]) -> FeedbackPairs:
    """Feedback records (``feedback.jsonl``) to pairs: helpful → every cited source is a positive;
    wrong_source → every cited source is a hard negative. Other ratings carry no pair."""
    queries: dict[str, str] = {}
    pos: dict[str, set[str]] = {}
    neg: dict[str, set[str]] = {}
    for rec in records:
        answer = rec.get("answer") or {}
        question = (answer.get("query") or answer.get("question") or "").strip()
        rating = rec.get("rating")
        keys = {k for k in (source_key(s) for s in answer.get("sources", ())) if k}
        if not question or not keys or rating not in ("helpful", "wrong_source"):
            continue
        qid = "fb-" + hashlib.sha256(question.encode()).hexdigest()[:12]
        queries[qid] = question
        (pos if rating == "helpful" else neg).setdefault(qid, set()).update(keys)
    for qid, keys in pos.items():  # a source called both helpful and wrong: trust neither
        both = keys & neg.get(qid, set())
        keys -= both
        if qid in neg:
            neg[qid] -= both
    return FeedbackPairs(queries, pos, neg)


async def mine_feedback_examples(
    search: Search, pairs: FeedbackPairs, *, negatives: int = 4
) -> list[Example]:
    """Feedback pairs as examples; sources are matched to hits by path, URL or title."""
    examples: list[Example] = []
    for qid, query in pairs.queries.items():
        hits = await search(query)
        good, bad = pairs.positives.get(qid, set()), pairs.negatives.get(qid, set())
        ex = Example(qid, query, set())
        seen: set[str] = set()
        for hit in hits:
            if hit.doc_id in seen:
                continue
            seen.add(hit.doc_id)
            key = hit_key(hit)
            if key in good:
                ex.positive_docs.add(hit.doc_id)
                ex.positives.append(passage_of(hit))
            elif key in bad:
                ex.negatives.insert(0, passage_of(hit))
            elif len(ex.negatives) < negatives and good:
                ex.negatives.append(passage_of(hit))
            else:
                ex.others.append(passage_of(hit))
        if ex.positives or ex.negatives:  # a wrong source alone still teaches the reranker
            examples.append(ex)
    return examples


def digest(examples: Sequence[Example]) -> str:
    """A stable fingerprint of training data, recorded with every candidate."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.qid, ex.query, [asdict(p) for p in ex.positives],
                             [asdict(p) for p in ex.negatives],
                             [asdict(p) for p in ex.others]], sort_keys=True).encode())
    return "sha256:" + h.hexdigest()[:16]

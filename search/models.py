"""Typed, frozen records passed between the retrieval stages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath


@dataclass(frozen=True)
class Document:
    """One source document, parsed to Markdown-ish text.

    ``doc_id`` is stable across runs (derived from source name and location), so an edited file
    keeps its id and only its ``content_hash`` changes.
    """

    doc_id: str
    source: str
    title: str
    text: str
    content_hash: str
    path: str | None = None
    url: str | None = None
    modified: float | None = None


@dataclass(frozen=True)
class Chunk:
    """A window of a document's text, small enough to embed, with its place in the document."""

    chunk_id: str
    doc_id: str
    ordinal: int
    text: str
    title: str
    headings: tuple[str, ...] = ()

    def embedding_text(self) -> str:
        """The text the embedder sees: title and heading path give a chunk its context."""
        context = " > ".join(h for h in (self.title, *self.headings) if h)
        return f"{context}\n{self.text}" if context else self.text


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with the score of the stage that produced it (higher is better)."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    text: str
    score: float
    headings: tuple[str, ...] = ()
    path: str | None = None
    url: str | None = None
    # Cosine similarity of query and chunk when the dense side saw it: unlike rank-fusion scores it
    # is comparable across queries, so the evidence threshold can use it.
    similarity: float | None = None

    @property
    def location(self) -> str | None:
        """Where a reader can open the source: its URL if it has one, else its path."""
        return self.url or self.path


# Here, beside Hit, because both the reranker (search.rerank) and its training data
# (search.finetune.data) need it: the model must train on exactly the text it later scores.
def hit_text(hit: Hit) -> str:
    """What the cross-encoder reads of a hit: its title and heading path give context."""
    context = " > ".join(x for x in (hit.title, *hit.headings) if x)
    return f"{context}\n{hit.text}" if context else hit.text


@dataclass(frozen=True)
class StoredDocument:
    """What the index remembers about a document, enough to decide whether to re-embed it."""

    doc_id: str
    source: str
    content_hash: str
    path: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class SourceStats:
    """Counts per knowledge source, for `lorebot sources`."""

    source: str
    documents: int
    chunks: int
    last_indexed: float | None


@dataclass(frozen=True)
class LoadFailure:
    """A file that could not be indexed, and why, in words a user can act on."""

    path: str
    reason: str


@dataclass(frozen=True)
class IndexSummary:
    """The outcome of one indexing run."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    seconds: float = 0.0
    failed: tuple[LoadFailure, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
        }


_REGISTRY_ID = re.compile(r"(embedder|adapter|reranker)-\d{8}-\d{6}-\d+")


def model_key(name: str) -> str:
    """What identifies a model: a fine-tuned candidate by its registry id (its directory is
    ``<data dir>/models/<id>``, and the data dir may move: restored from a backup, mounted
    elsewhere), any other model by its name or path as given."""
    path = PurePath(name)
    if path.parent.name == "models" and _REGISTRY_ID.fullmatch(path.name):
        return f"registry:{path.name}"
    return name


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two model names or paths are the same model (see :func:`model_key`)."""
    if a is None or b is None:
        return a is b
    return model_key(a) == model_key(b)

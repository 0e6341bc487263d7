"""Search bodies the OpenSearch backend sends, and hits parsed back: pure functions, no I/O.

What the backend writes (records, bulk actions, deletes) is built in ``opensearch_records``.
Every body built here is checked against OpenSearch's own API specification by the tests, with
unknown keys forbidden, so a misspelt key fails in CI rather than on a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.index.opensearch_mapping import (
    COMBINED_FIELD,
    DOCUMENT_FIELDS,
    HIT_FIELDS,
    KIND_CHUNK,
    KIND_DOCUMENT,
    VECTOR_FIELD,
    similarity_from_score,
)
from search.index.fts_query import MAX_QUERY_TERMS, STOP_WORDS, split_words
from search.models import Hit, StoredDocument
from search.text import CJK_RUN


# --------------------------------------------------------------------------------------------
# Query text.
# --------------------------------------------------------------------------------------------


def query_terms(text: str) -> list[str]:
    """The distinct content words of a free-text query, as the embedded backend picks them.

    Words are runs of letters, digits and marks; CJK runs stay whole (the ``cjk`` sub-fields'
    analyzer turns them into bigrams server-side). Stop words are dropped unless nothing else is
    left, repeats count once and at most ``MAX_QUERY_TERMS`` words are kept: the same rules as
    ``search.index.fts_query.fts_query``, so both backends search for the same words.
    """
    words = split_words(text)
    content = [w for w in words if w.lower() not in STOP_WORDS] or words
    distinct: dict[str, str] = {}
    for word in content:
        distinct.setdefault(word.lower(), word)
    return list(distinct.values())[:MAX_QUERY_TERMS]


@dataclass(frozen=True)
class QueryText:
    """A query split by script: words for the stemmed fields, CJK runs for the bigram fields."""

    words: str
    cjk: str


def query_text(text: str) -> QueryText | None:
    """The text ``multi_match`` gets for a free-text query; None when nothing is left to search.

    Words go to the stemmed fields and CJK runs only to the ``cjk`` sub-fields, so each field
    sees the text it was analysed for (a CJK run on a standard-tokenized field would match
    single ideographs). ``multi_match`` has no query syntax, so nothing a user types can be a
    syntax error; the words are still cleaned so punctuation-only input searches nothing, as in
    the embedded backend.
    """
    words: list[str] = []
    cjk: list[str] = []
    for term in query_terms(text):
        cjk += CJK_RUN.findall(term)
        words += CJK_RUN.sub(" ", term).split()
    if not words and not cjk:
        return None
    return QueryText(" ".join(words), " ".join(cjk))


# --------------------------------------------------------------------------------------------
# Search bodies.
# --------------------------------------------------------------------------------------------


def _chunk_filter(sources: Sequence[str] | None) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = [{"term": {"kind": KIND_CHUNK}}]
    if sources is not None:
        clauses.append({"terms": {"source": list(sources)}})
    return clauses


def bm25_body(
    text: QueryText,
    k: int,
    sources: Sequence[str] | None,
    *,
    weights: tuple[float, float, float] = (2.0, 1.5, 1.0),
    combined: bool = False,
) -> dict[str, Any]:
    """A BM25 search over title, headings and text and their CJK sub-fields.

    ``combined`` (the physical index has ``COMBINED_FIELD``): one ``match`` on that field, whose
    parts were repeated by their weights when written, so a chunk is scored as one weighted row,
    as FTS5 scores it. Else (an index from before that field) ``multi_match`` with
    ``most_fields`` adds per-field BM25 scores, which ranks worse (see ``opensearch_mapping``).
    The source filter sits in ``bool.filter`` so it never moves a score and is applied before
    the top ``k`` are taken. Ties break on ``chunk_id`` so results are stable.
    """
    title, headings, body = weights
    should = []
    for query, suffix in ((text.words, ""), (text.cjk, ".cjk")):
        if not query:
            continue
        if combined:
            should.append({"match": {f"{COMBINED_FIELD}{suffix}": {"query": query,
                                                                 "operator": "or"}}})
            continue
        fields = [
            f"{name}{suffix}^{weight:g}"
            for name, weight in (("title", title), ("headings", headings), ("text", body))
            if weight > 0
        ]
        if fields:
            should.append(
                {
                    "multi_match": {
                        "query": query,
                        "type": "most_fields",
                        "operator": "or",
                        "fields": fields,
                    }
                }
            )
    return {
        "size": k,
        "_source": {"includes": HIT_FIELDS},
        "track_total_hits": False,
        "track_scores": True,
        "query": {
            "bool": {
                "should": should,
                "minimum_should_match": 1,
                "filter": _chunk_filter(sources),
            }
        },
        "sort": ["_score", {"chunk_id": {"order": "asc"}}],
    }


def knn_body(
    vector: np.ndarray, k: int, sources: Sequence[str] | None,
    method_parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An approximate k-NN search on the HNSW graph.

    ``method_parameters`` (``IndexLayout.knn_method_parameters()``) carries ``ef_search`` for
    the lucene engine, which reads it only from the query; faiss has it in the mapping.

    A source filter goes inside the ``knn`` clause: faiss then applies it while it walks the
    graph (efficient filtering, OpenSearch 2.9+), so ``k`` hits come back even when the source
    is a small part of the index. A post-filter would drop hits after the top ``k`` were cut.
    Without a filter none is sent: only chunk records have vectors.
    """
    clause: dict[str, Any] = {"vector": [float(x) for x in vector], "k": k}
    if sources is not None:
        clause["filter"] = {"bool": {"filter": _chunk_filter(sources)}}
    if method_parameters:
        clause["method_parameters"] = dict(method_parameters)
    return {
        "size": k,
        "_source": {"includes": HIT_FIELDS},
        "track_total_hits": False,
        "query": {"knn": {VECTOR_FIELD: clause}},
    }


def hybrid_body(
    text: QueryText,
    vector: np.ndarray,
    k: int,
    sources: Sequence[str] | None,
    *,
    weights: tuple[float, float, float] = (2.0, 1.5, 1.0),
    method_parameters: dict[str, Any] | None = None,
    combined: bool = False,
) -> dict[str, Any]:
    """OpenSearch's server-side ``hybrid`` query: the BM25 and k-NN queries above as its two
    sub-queries, combined by the search pipeline named in the request (see ``pipeline_body``)."""
    return {
        "size": k,
        "_source": {"includes": HIT_FIELDS},
        "query": {
            "hybrid": {
                "queries": [
                    bm25_body(text, k, sources, weights=weights, combined=combined)["query"],
                    knn_body(vector, k, sources, method_parameters)["query"],
                ]
            }
        },
    }


def pipeline_body(technique: str, *, rrf_k: int = 60,
                  weights: tuple[float, float] = (1.0, 1.0)) -> dict[str, Any]:
    """A search pipeline combining a hybrid query's two result lists on the server.

    ``rrf``: reciprocal rank fusion (OpenSearch 2.19+; per-list weights are not set: the API
    specification does not describe them). ``min_max``: scores normalised to 0..1 per list, then
    a weighted arithmetic mean (2.10+).
    """
    if technique == "rrf":
        processor: dict[str, Any] = {
            "score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": rrf_k}}
        }
    elif technique == "min_max":
        total = sum(weights) or 1.0
        processor = {
            "normalization-processor": {
                "normalization": {"technique": "min_max"},
                "combination": {
                    "technique": "arithmetic_mean",
                    "parameters": {"weights": [w / total for w in weights]},
                },
            }
        }
    else:
        raise ValueError(f"unknown hybrid technique {technique!r}; use rrf or min_max")
    return {
        "description": f"lorebot: BM25 and k-NN fused on the server ({technique})",
        "phase_results_processors": [processor],
    }


def msearch_lines(index: str, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
    """``_msearch`` lines: a header naming the index, then the body, for each search."""
    lines: list[dict[str, Any]] = []
    for body in bodies:
        lines += [{"index": index}, body]
    return lines


def documents_body(
    source: str | None, page_size: int, after: str | None
) -> dict[str, Any]:
    """One page of document records, in ``doc_id`` order (``search_after`` paging).

    Sorted on the ``doc_id`` keyword, not ``_id``: sorting on ``_id`` needs field data that
    OpenSearch disables by default.
    """
    filters: list[dict[str, Any]] = [{"term": {"kind": KIND_DOCUMENT}}]
    if source is not None:
        filters.append({"term": {"source": source}})
    body: dict[str, Any] = {
        "size": page_size,
        "_source": {"includes": DOCUMENT_FIELDS},
        "track_total_hits": False,
        "query": {"bool": {"filter": filters}},
        "sort": [{"doc_id": {"order": "asc"}}],
    }
    if after is not None:
        body["search_after"] = [after]
    return body


def source_stats_body(max_sources: int = 10_000) -> dict[str, Any]:
    """Per source: documents (bucket size), chunks (sum over document records), last indexed."""
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"term": {"kind": KIND_DOCUMENT}},
        "aggs": {
            "sources": {
                "terms": {"field": "source", "size": max_sources, "order": {"_key": "asc"}},
                "aggs": {
                    "chunks": {"sum": {"field": "chunks"}},
                    "last_indexed": {"max": {"field": "indexed_at"}},
                },
            }
        },
    }


# --------------------------------------------------------------------------------------------
# Responses.
# --------------------------------------------------------------------------------------------


def hits_from_response(response: dict[str, Any], *, knn: bool = False) -> list[Hit]:
    """Hits of a search response, best first; k-NN scores become cosine similarities."""
    hits = []
    for raw in response.get("hits", {}).get("hits", []):
        src = raw.get("_source", {})
        score = float(raw.get("_score") or 0.0)
        similarity = None
        if knn:
            score = similarity = similarity_from_score(score)
        hits.append(
            Hit(
                chunk_id=src["chunk_id"],
                doc_id=src["doc_id"],
                source=src["source"],
                title=src.get("title") or "",
                text=src.get("text") or "",
                score=score,
                headings=tuple(src.get("headings") or ()),
                path=src.get("path"),
                url=src.get("url"),
                similarity=similarity,
            )
        )
    return hits


def stored_document(src: dict[str, Any]) -> StoredDocument:
    return StoredDocument(
        doc_id=src["doc_id"],
        source=src["source"],
        content_hash=src["content_hash"],
        path=src.get("path"),
        url=src.get("url"),
    )

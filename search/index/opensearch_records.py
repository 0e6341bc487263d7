"""What the OpenSearch backend writes: record ids, bulk actions, and the delete-by-query bodies
that remove what a commit superseded. Pure functions, no I/O.

Like the search bodies (``opensearch_queries``), every body built here is checked against
OpenSearch's own API specification by the tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from search.index.opensearch_mapping import (
    COMBINED_FIELD,
    KIND_CHUNK,
    KIND_DOCUMENT,
    VECTOR_FIELD,
)
from search.models import Chunk, Document

# OpenSearch refuses document ids longer than 512 bytes.
_MAX_ID_BYTES = 512


# --------------------------------------------------------------------------------------------
# Records and bulk actions.
# --------------------------------------------------------------------------------------------


def record_id(kind: str, key: str) -> str:
    """The ``_id`` of a record: kind and key, hashed when it would pass OpenSearch's limit."""
    raw = f"{kind[0]}:{key}"
    if len(raw.encode("utf-8")) <= _MAX_ID_BYTES:
        return raw
    return f"{kind[0]}#sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def combined_text(
    title: str, headings: Sequence[str], text: str, weights: tuple[float, float, float]
) -> list[str]:
    """The ``COMBINED_FIELD`` value: each part repeated by its BM25 weight, rounded half up.

    Lucene counts terms, so a weight can only repeat a part a whole number of times: title 2.0
    is exact, headings 1.5 counts twice (FTS5 counts 1.5); a weight below 0.5 leaves the part
    out. The repeats make the chunk longer for BM25's length norm, which FTS5 does not do; on
    SciFact test the two backends' nDCG@10 still agree within 0.001 (bench/opensearch_parity.py).
    """
    title_w, headings_w, text_w = (int(w + 0.5) for w in weights)
    return [title] * title_w + list(headings) * headings_w + [text] * text_w


def chunk_actions(
    index: str,
    document: Document,
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    write_id: str,
    combined: tuple[float, float, float] | None = None,
) -> list[dict[str, Any]]:
    """``async_bulk`` index actions for a document's chunks.

    ``combined``: the BM25 field weights to write ``COMBINED_FIELD`` with; None for a physical
    index mapped before that field existed (its strict mapping would refuse the record).
    """
    actions = []
    for chunk, vector in zip(chunks, vectors):
        title = chunk.title or document.title
        record = {
            "kind": KIND_CHUNK,
            "doc_id": document.doc_id,
            "chunk_id": chunk.chunk_id,
            "source": document.source,
            "write_id": write_id,
            "title": title,
            "headings": list(chunk.headings),
            "text": chunk.text,
            "ordinal": chunk.ordinal,
            "path": document.path,
            "url": document.url,
            VECTOR_FIELD: vector.tolist(),
        }
        if combined is not None:
            record[COMBINED_FIELD] = combined_text(title, chunk.headings, chunk.text, combined)
        actions.append({
            "_op_type": "index",
            "_index": index,
            "_id": record_id(KIND_CHUNK, chunk.chunk_id),
            "_source": record,
        })
    return actions


def document_action(
    index: str, document: Document, n_chunks: int, write_id: str, indexed_at: float
) -> dict[str, Any]:
    """The ``async_bulk`` index action for a document record."""
    return {
        "_op_type": "index",
        "_index": index,
        "_id": record_id(KIND_DOCUMENT, document.doc_id),
        "_source": {
            "kind": KIND_DOCUMENT,
            "doc_id": document.doc_id,
            "source": document.source,
            "write_id": write_id,
            "title": document.title,
            "content_hash": document.content_hash,
            "path": document.path,
            "url": document.url,
            "modified": document.modified,
            "indexed_at": indexed_at,
            "chunks": n_chunks,
        },
    }


# --------------------------------------------------------------------------------------------
# Deleting superseded records.
# --------------------------------------------------------------------------------------------


def stale_records_query(doc_ids: Sequence[str], write_id: str) -> dict[str, Any]:
    """``_delete_by_query`` body: records of these documents not written by ``write_id``."""
    return {
        "query": {
            "bool": {
                "filter": [{"terms": {"doc_id": list(doc_ids)}}],
                "must_not": [{"term": {"write_id": write_id}}],
            }
        }
    }


def source_records_query(source: str, write_id: str) -> dict[str, Any]:
    """``_delete_by_query`` body: every record of ``source`` not written by ``write_id``."""
    return {
        "query": {
            "bool": {
                "filter": [{"term": {"source": source}}],
                "must_not": [{"term": {"write_id": write_id}}],
            }
        }
    }


def doc_records_query(doc_ids: Sequence[str]) -> dict[str, Any]:
    """``_delete_by_query`` body: every record of these documents."""
    return {"query": {"terms": {"doc_id": list(doc_ids)}}}

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

from search.index.opensearch_mapping import KIND_CHUNK, KIND_DOCUMENT, VECTOR_FIELD
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


def chunk_actions(
    index: str,
    document: Document,
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    write_id: str,
) -> list[dict[str, Any]]:
    """``async_bulk`` index actions for a document's chunks."""
    actions = []
    for chunk, vector in zip(chunks, vectors):
        actions.append(
            {
                "_op_type": "index",
                "_index": index,
                "_id": record_id(KIND_CHUNK, chunk.chunk_id),
                "_source": {
                    "kind": KIND_CHUNK,
                    "doc_id": document.doc_id,
                    "chunk_id": chunk.chunk_id,
                    "source": document.source,
                    "write_id": write_id,
                    "title": chunk.title or document.title,
                    "headings": list(chunk.headings),
                    "text": chunk.text,
                    "ordinal": chunk.ordinal,
                    "path": document.path,
                    "url": document.url,
                    VECTOR_FIELD: vector.tolist(),
                },
            }
        )
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

"""Argument checks shared by every index backend, so they reject the same caller mistakes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.models import Chunk, Document


def validated_vectors(
    document: Document, chunks: Sequence[Chunk], vectors: np.ndarray
) -> np.ndarray:
    """Vectors as a C-contiguous float32 (n_chunks, dim) array; caller bugs raise ValueError."""
    for chunk in chunks:
        if chunk.doc_id != document.doc_id:
            raise ValueError(
                f"chunk {chunk.chunk_id!r} belongs to document {chunk.doc_id!r}, "
                f"not {document.doc_id!r}"
            )
    # A copy: the index keeps these rows after the call, whatever the caller does to its array.
    rows = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if not chunks:
        if rows.size:
            raise ValueError(f"document {document.doc_id!r}: vectors given but no chunks")
        return np.empty((0, 0), dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] != len(chunks) or rows.shape[1] == 0:
        raise ValueError(
            f"document {document.doc_id!r}: expected one vector per chunk, shape "
            f"({len(chunks)}, dim), got {rows.shape}"
        )
    if not np.isfinite(rows).all():
        raise ValueError(f"document {document.doc_id!r}: vectors contain NaN or infinity")
    return rows


def distinct_sources(sources: Sequence[str] | None) -> list[str] | None:
    if isinstance(sources, str):  # a str is a Sequence[str] too: "wiki" is not w, i, k, i
        raise TypeError(f"sources must be a list of source names, not the string {sources!r}")
    return None if sources is None else list(dict.fromkeys(sources))

"""Read-only access to the chunks of an embedded (SQLite) index file, for offline jobs.

Question generation samples chunks and the SFT export looks up the passages of cited documents;
neither needs vectors or search, so they read the file through a read-only connection of their
own (WAL mode: a reindex running at the same time is neither blocked nor seen half-done).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from search.errors import IndexStoreError

_COLUMNS = ("c.chunk_id, c.doc_id, d.source, d.title, d.path, d.url, c.headings, c.text, "
            "c.ordinal")
_BATCH = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class StoredChunk:
    """One chunk as the index stores it, with its document's title and location."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    path: str | None
    url: str | None
    headings: tuple[str, ...]
    text: str
    ordinal: int

    @property
    def location(self) -> str | None:
        return self.url or self.path


def _connect(index_path: Path) -> sqlite3.Connection:
    if not Path(index_path).is_file():
        raise IndexStoreError(
            f"no index at {index_path}: index some documents first (`lorebot index PATH`)"
        )
    try:
        conn = sqlite3.connect(f"file:{index_path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM chunks LIMIT 1")
    except sqlite3.Error as exc:
        raise IndexStoreError(f"cannot read the index {index_path}: {exc}") from exc
    return conn


def _chunk(row: Sequence) -> StoredChunk:
    chunk_id, doc_id, source, title, path, url, headings, text, ordinal = row
    return StoredChunk(chunk_id, doc_id, source, title, path, url,
                       tuple(json.loads(headings)), text, ordinal)


def chunk_ids(index_path: Path, *, sources: Sequence[str] | None = None,
              min_chars: int = 0) -> list[str]:
    """Ids of the chunks (of ``sources`` only, when given) with at least ``min_chars`` of text,
    in storage order: a stable order, so a seeded sample of them is reproducible."""
    sql = ("SELECT c.chunk_id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
           "WHERE length(c.text) >= ?")
    params: list = [min_chars]
    if sources:
        sql += f" AND d.source IN ({','.join('?' * len(sources))})"
        params += list(sources)
    with closing(_connect(index_path)) as conn:
        return [cid for (cid,) in conn.execute(sql + " ORDER BY c.rowid", params)]


def read_chunks(index_path: Path, ids: Sequence[str]) -> dict[str, StoredChunk]:
    """The chunks with these ids (missing ids are left out), by id."""
    out: dict[str, StoredChunk] = {}
    with closing(_connect(index_path)) as conn:
        for i in range(0, len(ids), _BATCH):
            part = list(ids[i: i + _BATCH])
            sql = (f"SELECT {_COLUMNS} FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
                   f"WHERE c.chunk_id IN ({','.join('?' * len(part))})")
            for row in conn.execute(sql, part):
                chunk = _chunk(row)
                out[chunk.chunk_id] = chunk
    return out


def iter_document_chunks(index_path: Path, *, path: str | None = None, url: str | None = None,
                         title: str | None = None) -> Iterator[StoredChunk]:
    """Chunks, in document order, of the documents found by path, else URL, else title (the
    order in which a cited source is matched to documents everywhere else)."""
    for column, value in (("path", path), ("url", url), ("title", title)):
        if not value:
            continue
        with closing(_connect(index_path)) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
                f"WHERE d.{column} = ? ORDER BY c.doc_id, c.ordinal", (value,)).fetchall()
        if rows:
            yield from (_chunk(r) for r in rows)
            return

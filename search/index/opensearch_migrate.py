"""Copy an embedded SQLite index into OpenSearch: documents, chunks and vectors, no re-embedding.

The copy goes through ``OpenSearchIndex.rebuild()``: it fills a new physical index, checks that
every document and chunk arrived, and only then moves the alias, so a failed or partial copy
never replaces what readers see. Stored content hashes are copied as they are, so the next
``lorebot index`` run with the same model and chunking finds every document unchanged.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.errors import IndexStoreError
from search.index.opensearch import OpenSearchIndex
from search.index.sqlite_schema import SCHEMA_VERSION
from search.models import Chunk, Document

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class MigrationSummary:
    """What a migration copied, and where to."""

    index: str
    alias: str
    documents: int
    chunks: int
    dimension: int | None
    seconds: float

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "alias": self.alias,
            "documents": self.documents,
            "chunks": self.chunks,
            "dimension": self.dimension,
            "seconds": round(self.seconds, 3),
        }


class SqliteIndexReader:
    """Reads a lorebot SQLite index file page by page, read-only, off the event loop."""

    def __init__(self, path: Path, page_size: int = 200) -> None:
        self.path = Path(path)
        self.page_size = page_size
        if not self.path.is_file():
            raise IndexStoreError(
                f"no embedded index at {self.path}; pass --from with the path of index.sqlite3"
            )
        try:
            # Read-only, and usable from whichever worker thread runs the next page (calls
            # never overlap: each awaits the previous one).
            self._conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            meta = dict(self._conn.execute("SELECT key, value FROM meta"))
        except sqlite3.Error as exc:
            raise IndexStoreError(f"{self.path} is not a readable lorebot index ({exc})") from exc
        if meta.get("schema") != SCHEMA_VERSION:
            raise IndexStoreError(
                f"{self.path} has schema version {meta.get('schema')!r}; this lorebot reads "
                f"version {SCHEMA_VERSION}"
            )
        self.dimension = int(meta["dim"]) if meta.get("dim") is not None else None

    def counts(self) -> tuple[int, int]:
        (documents,) = self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()
        (chunks,) = self._conn.execute("SELECT COUNT(*) FROM chunks").fetchone()
        return documents, chunks

    async def pages(self) -> AsyncIterator[list[tuple[Document, list[Chunk], np.ndarray, float]]]:
        """(document, chunks, vectors, indexed_at) in ``doc_id`` order, a page at a time."""
        after = ""
        while True:
            page = await asyncio.to_thread(self._page, after)
            if not page:
                return
            yield page
            after = page[-1][0].doc_id

    def _page(self, after: str) -> list[tuple[Document, list[Chunk], np.ndarray, float]]:
        rows = self._conn.execute(
            "SELECT doc_id, source, title, path, url, modified, content_hash, indexed_at "
            "FROM documents WHERE doc_id > ? ORDER BY doc_id LIMIT ?",
            (after, self.page_size),
        ).fetchall()
        if not rows:
            return []
        chunks: dict[str, list[tuple]] = {row[0]: [] for row in rows}
        for chunk in self._conn.execute(
            "SELECT doc_id, chunk_id, ordinal, headings, text, vector FROM chunks "
            "WHERE doc_id IN (SELECT value FROM json_each(?)) ORDER BY doc_id, ordinal",
            (json.dumps(list(chunks)),),
        ):
            chunks[chunk[0]].append(chunk)
        page = []
        for doc_id, source, title, path, url, modified, content_hash, indexed_at in rows:
            document = Document(
                doc_id=doc_id, source=source, title=title, text="", content_hash=content_hash,
                path=path, url=url, modified=modified,
            )
            own = chunks[doc_id]
            records = [
                Chunk(chunk_id, doc_id, ordinal, text, title, tuple(json.loads(headings)))
                for _, chunk_id, ordinal, headings, text, _ in own
            ]
            if own:
                vectors = np.frombuffer(b"".join(c[5] for c in own), dtype=np.float32)
                vectors = vectors.reshape(len(own), -1)
            else:
                vectors = np.zeros((0, self.dimension or 0), dtype=np.float32)
            page.append((document, records, vectors, indexed_at))
        return page

    def close(self) -> None:
        self._conn.close()


async def migrate_sqlite(
    path: Path, index: OpenSearchIndex, *, on_progress: Progress | None = None
) -> MigrationSummary:
    """Copy the SQLite index at ``path`` into a new physical index and move the alias to it."""
    started = time.perf_counter()
    reader = SqliteIndexReader(path)
    try:
        total_documents, total_chunks = await asyncio.to_thread(reader.counts)
        async with index.rebuild(reader.dimension) as writer:
            async for page in reader.pages():
                for document, chunks, vectors, indexed_at in page:
                    await writer.upsert(document, chunks, vectors, indexed_at=indexed_at)
                if on_progress:
                    on_progress(writer.documents, total_documents)
            await writer.flush()
            # Check before the alias moves: a short copy must not replace a full index.
            documents, chunks = await index.count_records(writer.target)
            if (documents, chunks) != (total_documents, total_chunks):
                raise IndexStoreError(
                    f"the copy in {writer.target} holds {documents} documents and {chunks} "
                    f"chunks, the SQLite index {total_documents} and {total_chunks}; the alias "
                    "was not moved, readers still see the previous index"
                )
        return MigrationSummary(
            index=writer.target,
            alias=index.layout.alias,
            documents=total_documents,
            chunks=total_chunks,
            dimension=reader.dimension,
            seconds=time.perf_counter() - started,
        )
    finally:
        reader.close()

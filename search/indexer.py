"""Incremental indexing: load → chunk → embed → upsert, skipping what has not changed.

A run is one index transaction: readers keep seeing the previous index until the run commits,
and a run that fails or is killed leaves it untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from search.embedding import Embedder
from search.errors import SourceError
from search.index.base import IndexWriter, SearchIndex
from search.models import Chunk, Document, IndexSummary, LoadFailure
from search.source_scope import (
    check_paths,
    in_scope,
    local_path,
    norm_path,
    rebased_id,
    source_roots,
)
from search.text import content_hash

Progress = Callable[[int, int | None], None]


@dataclass
class _Batch:
    docs: list[tuple[Document, list[Chunk], bool]] = field(default_factory=list)  # (doc, chunks, is_new)
    n_chunks: int = 0


class Indexer:
    """Indexes documents of one source into an index with an embedder and a chunker."""

    def __init__(
        self,
        index: SearchIndex,
        embedder: Embedder,
        *,
        chunk_tokens: int = 220,
        chunk_overlap: int = 32,
        batch_chunks: int = 256,
    ):
        self.index = index
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.batch_chunks = batch_chunks
        self._chunker = None
        # Stored hashes cover the chunking and the model too: changing either re-embeds everything.
        self.fingerprint = self._fingerprint(embedder.model_id)

    def _fingerprint(self, hash_model: str) -> str:
        from search.chunking import CHUNKING_VERSION  # a constant; the module loads no model

        # The inference backend is part of the vectors' identity: int8 vectors are not the fp32
        # ones, so switching backend re-embeds as a model change does. torch adds nothing.
        from search.onnx_backend import vector_tag  # numpy only at import

        backend = getattr(self.embedder, "backend", "torch")
        suffix = "" if backend == "torch" else f"|{vector_tag(backend)}"
        return f"{hash_model}|{self.chunk_tokens}|{self.chunk_overlap}|c{CHUNKING_VERSION}{suffix}"

    @property
    def chunker(self):
        if self._chunker is None:  # built on first change, so an unchanged run loads no tokenizer
            from search.chunking import Chunker

            self._chunker = Chunker(self.embedder.tokenizer, self.chunk_tokens, self.chunk_overlap)
        return self._chunker

    def stored_hash(self, document: Document, fingerprint: str | None = None) -> str:
        return content_hash(document.content_hash, fingerprint or self.fingerprint)

    async def _run_fingerprint(self) -> str:
        """The fingerprint the index's stored hashes use for our model.

        After an embedder promotion or rollback re-embedded the index, its vectors are our
        model's but its hashes still name the model before: an index that can prove it (the
        SQLite one, ``hash_model_for``) says which, and unchanged documents stay unchanged.
        Other backends do not need to know: their hashes always name our model.
        """
        hash_model_for = getattr(self.index, "hash_model_for", None)
        hash_model = await hash_model_for(self.embedder.model_id) if hash_model_for else None
        return self._fingerprint(hash_model) if hash_model else self.fingerprint

    async def index_documents(
        self,
        source: str,
        items: Iterable[Document | LoadFailure],
        *,
        total: int | None = None,
        on_progress: Progress | None = None,
        remove_missing: bool = True,
        paths: Sequence[str | os.PathLike] | None = None,
        prune: bool = False,
    ) -> IndexSummary:
        """Bring ``source`` in the index in line with ``items``; returns what changed.

        Without ``paths``, ``items`` are the whole source: documents of ``source`` that are no
        longer among them are removed when ``remove_missing``. With ``paths`` (the files and
        folders ``items`` were read from), only documents under those paths whose files are gone
        are removed; ``prune`` removes every other document of the source too. Then a path
        another source holds, or a folder that is not this source's, is refused with a
        `SourceError` before anything is written. A document that failed to load keeps its
        previous indexed version.
        """
        started = time.perf_counter()
        stored = await self.index.documents(source)
        scope = [p for p in (norm_path(p) for p in paths or ()) if p] if paths else None
        roots: set[str] = set()
        if scope is not None:
            if stored and not any(local_path(d) for d in stored.values()):
                raise SourceError(
                    f"source '{source}' holds web pages or Slack items, not files; index "
                    f"{', '.join(scope)} under its own name with --source NAME")
            docs_by_source: dict[str, dict] = {}
            for doc in (await self.index.documents()).values():
                docs_by_source.setdefault(doc.source, {})[doc.doc_id] = doc
            by_source = {name: source_roots(name, docs) for name, docs in docs_by_source.items()}
            check_paths(source, scope, by_source)
            roots = by_source.get(source, set())
        by_path = {local_path(d): doc_id for doc_id, d in stored.items() if local_path(d)}
        # One fingerprint for the whole run, to compare and to write: a file's hashes all name
        # one model.
        fingerprint = await self._run_fingerprint()
        counts = {"added": 0, "updated": 0, "unchanged": 0, "chunks": 0}
        failed: list[LoadFailure] = []
        seen: set[str] = set()
        seen_paths: dict[str, str | None] = {}
        done = 0

        def progressed() -> None:
            nonlocal done
            done += 1
            if on_progress:
                on_progress(done, total)

        queue: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=2)

        async def produce() -> None:
            # Loading and chunking run on a worker thread, overlapping the embedding of the
            # previous batch on the model thread.
            iterator = iter(items)
            batch = _Batch()
            while True:
                step = await asyncio.to_thread(self._next_prepared, iterator, stored,
                                               fingerprint, source, by_path, roots)
                if step is None:
                    break
                item, chunks = step
                if isinstance(item, LoadFailure):
                    failed.append(item)
                    progressed()
                    continue
                if item.doc_id in seen_paths and seen_paths[item.doc_id] != item.path:
                    # Two folders of one source with the same relative path would share an id
                    # and overwrite each other.
                    failed.append(LoadFailure(item.path or item.doc_id, (
                        f"same relative path as {seen_paths[item.doc_id]} in another folder of "
                        f"source '{source}'; index the folders as separate sources")))
                    progressed()
                    continue
                seen.add(item.doc_id)
                seen_paths[item.doc_id] = item.path
                if chunks is None:  # unchanged
                    counts["unchanged"] += 1
                    progressed()
                    continue
                if not chunks:
                    failed.append(LoadFailure(item.path or item.url or item.doc_id, "no text to index"))
                    progressed()
                    continue
                batch.docs.append((item, chunks, item.doc_id not in stored))
                batch.n_chunks += len(chunks)
                progressed()
                if batch.n_chunks >= self.batch_chunks:
                    await queue.put(batch)
                    batch = _Batch()
            if batch.docs:
                await queue.put(batch)
            await queue.put(None)

        async def consume(writer: IndexWriter) -> None:
            while (batch := await queue.get()) is not None:
                texts = [c.embedding_text() for _, chunks, _ in batch.docs for c in chunks]
                vectors = await self.embedder.embed_documents(texts)
                offset = 0
                for doc, chunks, is_new in batch.docs:
                    rows = vectors[offset : offset + len(chunks)]
                    offset += len(chunks)
                    stored_doc = dataclasses.replace(
                        doc, content_hash=self.stored_hash(doc, fingerprint))
                    await writer.upsert(stored_doc, chunks, np.ascontiguousarray(rows))
                    counts["added" if is_new else "updated"] += 1
                    counts["chunks"] += len(chunks)

        removed = 0
        async with self.index.transaction() as writer:
            producer = asyncio.create_task(produce())
            try:
                await consume(writer)
                await producer
            finally:
                if not producer.done():
                    producer.cancel()
            if remove_missing:
                # A file that exists but failed to load keeps its previous version: nothing
                # already indexed is lost to a transient or partial corruption.
                failed_paths = {norm_path(f.path) for f in failed}
                for doc_id, doc in stored.items():
                    if doc_id in seen or norm_path(doc.path) in failed_paths:
                        continue
                    if scope is not None and not prune and not _gone_under(doc, scope):
                        continue  # outside the indexed paths, or still there: not ours to drop
                    await writer.delete(doc_id)
                    removed += 1
        return IndexSummary(
            added=counts["added"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            removed=removed,
            chunks=counts["chunks"],
            seconds=time.perf_counter() - started,
            failed=tuple(failed),
        )

    def _next_prepared(self, iterator: Iterator, stored: dict, fingerprint: str, source: str,
                       by_path: dict, roots: set[str]):
        """Next item with its chunks: None for an unchanged document; runs on a worker thread."""
        item = next(iterator, None)
        if item is None or isinstance(item, LoadFailure):
            return None if item is None else (item, None)
        item = _keyed_by_path(item, source, by_path, roots)
        previous = stored.get(item.doc_id)
        if previous is not None and previous.content_hash == self.stored_hash(item, fingerprint):
            return item, None
        chunks = self.chunker.chunk(item)
        if not chunks and item.text.strip():
            chunks = _heading_chunk(item)
        return item, chunks


def _keyed_by_path(doc: Document, source: str, by_path: dict, roots: set[str]) -> Document:
    """The document under the id its file already has in the source, whichever folder of the
    source it was read from this time (``index kb/sub/a.md`` after ``index kb``)."""
    path = norm_path(doc.path) if doc.url is None else None
    if path is None:
        return doc
    doc_id = by_path.get(path) or rebased_id(source, path, roots)
    return doc if doc_id in (None, doc.doc_id) else dataclasses.replace(doc, doc_id=doc_id)


def _heading_chunk(doc: Document) -> list[Chunk]:
    """A document that is only headings (a stub page) is still findable by them: the chunker
    leaves heading lines out of the body, so its headings become its one chunk."""
    from search.chunking import iter_headings
    from search.text import plain_text

    names = [name for _, name, _, _ in iter_headings(doc.text) if name]
    text = " — ".join(dict.fromkeys(names)) or plain_text(doc.text)[:1000]
    if not text:
        return []
    return [Chunk(chunk_id=f"{doc.doc_id}:0", doc_id=doc.doc_id, ordinal=0, text=text,
                  title=doc.title, headings=())]


def _gone_under(doc, scope: list[str]) -> bool:
    """Whether a stored document lies under the indexed paths and its file no longer exists."""
    path = local_path(doc)
    return path is not None and in_scope(path, scope) and not os.path.lexists(path)

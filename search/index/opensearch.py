"""The production index: OpenSearch over its async client, behind a read alias.

What lives on the cluster is described in ``opensearch_mapping``: an index template, versioned
physical indexes ``PREFIX-vN`` and the alias ``PREFIX`` on one of them. The other modules:
``opensearch_queries`` builds every request body (pure functions), ``opensearch_cluster`` sends
the index-management requests, ``opensearch_client`` builds the client and turns its errors into
``IndexStoreError``, ``opensearch_writers`` holds the two writers, ``opensearch_migrate`` copies
an embedded SQLite index in.

How writes become visible, and what is and is not atomic
--------------------------------------------------------

OpenSearch has no multi-document transactions. This backend gets as close as the engine allows,
and is plain about the rest:

``transaction()``
    Writes are buffered on the client (in memory, spilling to a temporary file past
    ``spool_memory_mb``), so nothing reaches the cluster before the block exits: an exception
    inside the block, or a process killed inside it, leaves the index exactly as it was. On a
    normal exit the commit runs, against the physical index the alias names at that moment:

    0. refresh, so leftovers of a commit that died half-way are visible to step 2;
    1. bulk-index the new chunk records of every upserted document, tagged with this commit's
       ``write_id`` (``helpers.async_bulk``, retrying 429 rejections with exponential backoff);
    2. delete-by-query every record of the touched documents (and of cleared sources) that this
       commit did not write: old chunks, deleted documents;
    3. bulk-index the document records (content hash, chunk count);
    4. refresh.

    Physical indexes are created with ``refresh_interval: -1``, so searches see the index as of
    the last refresh: a finished commit appears at step 4, not bulk by bulk. That is not an
    atomic snapshot: each shard refreshes on its own (a search may, for milliseconds, see one
    shard before and another after), a replica may refresh a moment after its primary, and a
    shard that recovers or relocates opens with everything written so far. A commit that dies
    between steps 1 and 4 leaves its writes to appear at the next refresh; because document
    records are written last (step 3), such a document still carries its old content hash (or
    none), so the next indexing run rewrites it and step 2 removes the leftovers (a new document
    that vanished from its source before that run leaves orphan chunks, until a rebuild).
    Concurrent commits from several processes are not serialised: per document, the last commit
    wins.
    Within one process, commits run one at a time.

``rebuild()``
    A full rebuild writes into a new physical index that nobody reads, then moves the alias in
    one ``_aliases`` request (remove from the old index + add to the new one), which OpenSearch
    applies atomically. A rebuild that fails or is cancelled deletes its new index, and readers
    never left the old one; the old index is deleted only after the swap succeeded. Commits of
    ``transaction()`` that run during a rebuild go to the old index and are lost with it: run
    rebuilds when no indexing is running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from search.errors import IndexStoreError
from search.index.opensearch_client import is_client_error, root_cause
from search.index.opensearch_cluster import ClusterAccess
from search.index.opensearch_mapping import KIND_CHUNK, KIND_DOCUMENT, IndexLayout
from search.index.opensearch_queries import (
    bm25_body,
    chunk_actions,
    document_action,
    documents_body,
    hits_from_response,
    hybrid_body,
    knn_body,
    msearch_lines,
    pipeline_body,
    query_text,
    source_records_query,
    source_stats_body,
    stale_records_query,
    stored_document,
)
from search.index.opensearch_writers import (
    OpenSearchIndexWriter,
    OpenSearchRebuildWriter,
    Spool,
)
from search.index.checks import distinct_sources
from search.models import Hit, SourceStats, StoredDocument

logger = logging.getLogger(__name__)

# Documents per delete-by-query: well under OpenSearch's 65,536-term limit, small enough that
# one request stays short.
_DELETE_BATCH = 1000
_PAGE = 1000


class OpenSearchIndex(ClusterAccess):
    """A hybrid index on an OpenSearch cluster (see the module docstring).

    Talks to the cluster lazily, on first use; ``await index.open()`` checks the connection at
    start-up instead. Also an async context manager that closes the client on exit. Pass
    ``client`` to use an ``AsyncOpenSearch`` built elsewhere (it is then not closed here).
    """

    def __init__(
        self,
        url: str = "http://localhost:9200",
        *,
        layout: IndexLayout | None = None,
        title_weight: float = 2.0,
        headings_weight: float = 1.5,
        text_weight: float = 1.0,
        spool_memory_mb: float = 64.0,
        server_hybrid: str | None = None,
        rrf_k: int = 60,
        fusion_weights: tuple[float, float] = (1.0, 1.0),
        **cluster_options: Any,
    ) -> None:
        """``cluster_options``: credentials, TLS, timeout, bulk settings or a ready ``client``
        (see ``ClusterAccess``). ``server_hybrid`` (``rrf`` or ``min_max``) makes
        ``server_hybrid_search`` available, fused by a search pipeline that ``setup()`` creates;
        ``rrf_k`` and ``fusion_weights`` (BM25, dense) configure that pipeline."""
        super().__init__(url, layout=layout, **cluster_options)
        if server_hybrid not in (None, "rrf", "min_max"):
            raise ValueError(f"server_hybrid must be rrf or min_max, not {server_hybrid!r}")
        self.server_hybrid = server_hybrid
        self.rrf_k = rrf_k
        self.fusion_weights = fusion_weights
        self.weights = (float(title_weight), float(headings_weight), float(text_weight))
        self.spool_memory_bytes = int(spool_memory_mb * 1024 * 1024)
        self._commit_lock = asyncio.Lock()

    async def __aenter__(self) -> OpenSearchIndex:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- the protocol: reads -----------------------------------------------------------------

    async def documents(self, source: str | None = None) -> dict[str, StoredDocument]:
        """Stored documents by id, optionally of one source only (paged, in id order)."""
        found: dict[str, StoredDocument] = {}
        after: str | None = None
        while True:
            response = await self._search(documents_body(source, _PAGE, after), "listing documents")
            hits = response.get("hits", {}).get("hits", [])
            for raw in hits:
                doc = stored_document(raw["_source"])
                found[doc.doc_id] = doc
            if len(hits) < _PAGE:
                return found
            after = hits[-1]["_source"]["doc_id"]

    async def bm25(self, query: str, k: int, sources: Sequence[str] | None = None) -> list[Hit]:
        """The ``k`` best chunks by BM25 (``multi_match`` over weighted fields), best first."""
        text = query_text(query)
        sources = distinct_sources(sources)
        if text is None or k <= 0 or (sources is not None and not sources):
            return []
        body = bm25_body(text, k, sources, weights=self.weights)
        return hits_from_response(await self._search(body, "searching (BM25)"))

    async def knn(
        self, vector: np.ndarray, k: int, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        """The ``k`` nearest chunks by inner product on the HNSW graph (approximate), best first.

        Scores are the cosine similarities (vectors are normalised); ``Hit.similarity`` carries
        the same value.
        """
        query = _query_vector(vector)
        sources = distinct_sources(sources)
        if k <= 0 or (sources is not None and not sources):
            return []
        body = knn_body(query, k, sources)
        return hits_from_response(await self._search(body, "searching (k-NN)"), knn=True)

    async def hybrid_candidates(
        self, query: str, vector: np.ndarray, k: int, sources: Sequence[str] | None = None
    ) -> tuple[list[Hit], list[Hit]]:
        """BM25 and k-NN candidates in one ``_msearch`` round trip: ``(bm25_hits, knn_hits)``.

        The same two searches as ``bm25()`` and ``knn()``; the caller fuses them, so ranking
        stays identical across backends.
        """
        text = query_text(query)
        vec = _query_vector(vector)
        sources = distinct_sources(sources)
        if k <= 0 or (sources is not None and not sources):
            return [], []
        if text is None:
            return [], await self.knn(vec, k, sources)
        lines = msearch_lines(
            self.layout.alias,
            bm25_body(text, k, sources, weights=self.weights),
            knn_body(vec, k, sources),
        )
        action = "searching (BM25 and k-NN)"
        response = await self._call(action, self.client.msearch(body=lines))
        results = []
        for item in response.get("responses", []):
            if "error" in item:
                kind, _ = root_cause(item["error"])
                if kind == "index_not_found_exception":
                    results.append({})
                    continue
                raise self._errors.from_body(item.get("status"), item["error"], action)
            results.append(item)
        if len(results) != 2:
            raise IndexStoreError(f"OpenSearch answered {len(results)} searches of 2 ({action})")
        return hits_from_response(results[0]), hits_from_response(results[1], knn=True)

    @property
    def pipeline_name(self) -> str:
        """The search pipeline of server-side hybrid search."""
        return f"{self.layout.prefix}-hybrid"

    async def server_hybrid_search(
        self, query: str, vector: np.ndarray, k: int, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        """The ``k`` best chunks fused on the cluster: a ``hybrid`` query through the search
        pipeline (``server_hybrid``). Optional, off by default: its ranking is OpenSearch's,
        not the client-side RRF both backends share, and its hits carry no cosine similarity
        (the answer's evidence threshold then has none to check).
        """
        if not self.server_hybrid:
            raise IndexStoreError(
                "server-side hybrid search is off; set LOREBOT_OPENSEARCH__SERVER_HYBRID to rrf "
                "or min_max and run `lorebot opensearch setup`"
            )
        text = query_text(query)
        vec = _query_vector(vector)
        sources = distinct_sources(sources)
        if k <= 0 or (sources is not None and not sources):
            return []
        if text is None:
            return await self.knn(vec, k, sources)
        body = hybrid_body(text, vec, k, sources, weights=self.weights)
        action = "searching (server-side hybrid)"
        try:
            response = await self.client.search(
                index=self.layout.alias, body=body, params={"search_pipeline": self.pipeline_name}
            )
        except Exception as exc:
            if is_client_error(exc):
                raise self._errors.from_exception(exc, action) from exc
            raise
        hits = hits_from_response(response)
        return [dataclasses.replace(h, similarity=None) for h in hits]

    async def _put_pipeline(self) -> None:
        """Create the search pipeline, if the cluster is new enough for the technique."""
        needed = {"rrf": (2, 19), "min_max": (2, 10)}[self.server_hybrid]
        info = await self._call("reading the cluster version", self.client.info())
        number = str(info.get("version", {}).get("number", "0"))
        version = tuple(int(p) for p in re.findall(r"\d+", number)[:2])
        if version < needed:
            raise IndexStoreError(
                f"server-side hybrid search with {self.server_hybrid} needs OpenSearch "
                f"{needed[0]}.{needed[1]} or later; {self._errors.url} runs {number}. Set "
                "LOREBOT_OPENSEARCH__SERVER_HYBRID=off (client-side RRF, the default)"
            )
        body = pipeline_body(self.server_hybrid, rrf_k=self.rrf_k, weights=self.fusion_weights)
        await self._call(
            f"creating the search pipeline '{self.pipeline_name}' (needs the neural-search "
            "plugin; or set LOREBOT_OPENSEARCH__SERVER_HYBRID=off)",
            self.client.search_pipeline.put(id=self.pipeline_name, body=body),
        )

    async def source_stats(self) -> list[SourceStats]:
        """Document and chunk counts and last indexed time per source, by source name."""
        response = await self._search(source_stats_body(), "counting documents per source")
        buckets = response.get("aggregations", {}).get("sources", {}).get("buckets", [])
        stats = [
            SourceStats(
                source=b["key"],
                documents=int(b["doc_count"]),
                chunks=int(b["chunks"]["value"] or 0),
                last_indexed=b["last_indexed"]["value"],
            )
            for b in buckets
        ]
        return sorted(stats, key=lambda s: s.source)

    # ---- the protocol: writes ----------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[OpenSearchIndexWriter]:
        """A writer whose changes are sent, and made visible, when the block exits normally.

        See the module docstring for what the commit does and which guarantees hold.
        """
        live = await self._live()
        spool = Spool(self.spool_memory_bytes)
        writer = OpenSearchIndexWriter(self, spool, live.dim if live else None)
        try:
            try:
                yield writer
            finally:
                writer._active = False
            async with self._commit_lock:
                await self._commit(spool)
        finally:
            spool.close()

    @asynccontextmanager
    async def rebuild(self, dim: int | None = None) -> AsyncIterator[OpenSearchRebuildWriter]:
        """A writer into a new, empty physical index that replaces the live one on success.

        ``dim`` (the embedding dimension) maps the vector field up front; without it the
        first vector decides. See the module docstring.
        """
        await self._put_template()
        current = await self._alias_targets()
        target = self.layout.physical(await self._next_version())
        # No replicas while it is built: every bulk would be written twice for nothing.
        body = self.layout.create_body(dim, alias=False, replicas=0)
        await self._call(f"creating {target}", self.client.indices.create(index=target, body=body))
        writer = OpenSearchRebuildWriter(self, target, dim)
        try:
            yield writer
            await writer.flush()
            await self._refresh(target)
            if self.layout.replicas:
                settings = {"index": {"number_of_replicas": self.layout.replicas}}
                await self._call(
                    f"setting replicas of {target}",
                    self.client.indices.put_settings(index=target, body=settings),
                )
            actions: list[dict[str, Any]] = [
                {"remove": {"index": old, "alias": self.layout.alias}} for old in current
            ]
            actions.append({"add": {"index": target, "alias": self.layout.alias}})
            await self._call(
                f"moving the alias '{self.layout.alias}' to {target}",
                self.client.indices.update_aliases(body={"actions": actions}),
            )
        except BaseException:
            writer._active = False
            await asyncio.shield(self._drop(target))
            raise
        writer._active = False
        logger.info("alias %s now on %s (was %s)", self.layout.alias, target, current)
        for old in current:
            await self._drop(old)

    async def setup(self, dim: int | None = None, *, fresh: bool = False) -> str:
        """Create (or update) the template, and the first index with the alias if missing.

        ``fresh`` builds a new empty index and moves the alias to it even when one exists (after
        a model change; reindex every source afterwards). Returns the live physical index.
        """
        await self._put_template()
        if self.server_hybrid:
            await self._put_pipeline()
        live = await self._live()
        if live is None:
            return (await self._create_first(dim)).index
        if fresh:
            async with self.rebuild(dim) as writer:
                pass
            return writer.target
        if dim is not None and live.dim is None:
            await self._add_vector_field(live.index, dim)
        elif dim is not None and live.dim != dim:
            raise self._dimension_error(dim, live.dim)
        return live.index

    async def count_records(self, index: str | None = None) -> tuple[int, int]:
        """(documents, chunks) stored in ``index`` (default: the alias), after a refresh."""
        target = index or self.layout.alias
        await self._refresh(target)
        counts = []
        for kind in (KIND_DOCUMENT, KIND_CHUNK):
            response = await self._call(
                f"counting records in {target}",
                self.client.count(index=target, body={"query": {"term": {"kind": kind}}}),
            )
            counts.append(int(response["count"]))
        return counts[0], counts[1]

    async def describe(self) -> dict[str, Any]:
        """The live physical index behind the alias and its vector dimension (for status)."""
        live = await self._live()
        return {
            "url": self._errors.url,
            "alias": self.layout.alias,
            "index": live.index if live else None,
            "dimension": live.dim if live else None,
        }

    # ---- commit ------------------------------------------------------------------------------

    async def _commit(self, spool: Spool) -> None:
        if spool.empty:
            return
        live = await self._live()
        if live is None:
            if not spool.upserts:
                return  # deletes against an index that does not exist yet: nothing to do
            live = await self._create_first(spool.dim)
        if spool.dim is not None:
            if live.dim is None:
                await self._add_vector_field(live.index, spool.dim)
            elif live.dim != spool.dim:
                raise self._dimension_error(spool.dim, live.dim)
        target, write_id = live.index, uuid.uuid4().hex
        await self._refresh(target)

        async def chunk_records() -> AsyncIterator[dict[str, Any]]:
            async for document, chunks, vectors in spool.final_upserts():
                for action in chunk_actions(target, document, chunks, vectors, write_id):
                    yield action

        await self._bulk(chunk_records(), f"writing chunks to {target}")
        touched = list(spool.last_op)
        for start in range(0, len(touched), _DELETE_BATCH):
            batch = touched[start : start + _DELETE_BATCH]
            await self._delete_by_query(target, stale_records_query(batch, write_id))
        for source in spool.cleared:
            await self._delete_by_query(target, source_records_query(source, write_id))

        async def document_records() -> AsyncIterator[dict[str, Any]]:
            now = time.time()
            async for document, chunks, _ in spool.final_upserts():
                yield document_action(target, document, len(chunks), write_id, now)

        await self._bulk(document_records(), f"writing documents to {target}")
        await self._refresh(target)


def _query_vector(vector: np.ndarray) -> np.ndarray:
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if not np.isfinite(query).all():
        raise ValueError("the query vector contains NaN or infinity")
    return query

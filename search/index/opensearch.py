"""The production index: OpenSearch over its async client, behind a read alias.

What lives on the cluster is described in ``opensearch_mapping``: an index template, versioned
physical indexes ``PREFIX-vN`` and the alias ``PREFIX`` on one of them. The other modules:
``opensearch_queries`` builds the search bodies and ``opensearch_records`` what is written (pure
functions), ``opensearch_cluster`` sends the index-management requests, ``opensearch_client``
builds the client and turns its errors into ``IndexStoreError``, ``opensearch_writers`` holds the
two writers, ``opensearch_commit`` sends their writes, ``opensearch_migrate`` copies an embedded
SQLite index in.

Writes: ``transaction()`` buffers them and sends them when the block exits normally;
``rebuild()`` writes a new physical index and then moves the alias to it. OpenSearch has no
multi-document transactions: how writes become visible, and what is and is not atomic, is told in
``opensearch_commit``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import numpy as np

from search.errors import IndexStoreError
from search.index.checks import distinct_sources
from search.index.opensearch_client import is_client_error, root_cause
from search.index.opensearch_cluster import ClusterAccess
from search.index.opensearch_commit import commit_transaction, rebuild_index
from search.index.opensearch_mapping import KIND_CHUNK, KIND_DOCUMENT, IndexLayout
from search.index.opensearch_queries import (
    bm25_body,
    documents_body,
    hits_from_response,
    hybrid_body,
    knn_body,
    msearch_lines,
    pipeline_body,
    query_text,
    source_stats_body,
    stored_document,
)
from search.index.opensearch_writers import (
    OpenSearchIndexWriter,
    OpenSearchRebuildWriter,
    Spool,
)
from search.models import Hit, SourceStats, StoredDocument

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
        body = bm25_body(text, k, sources, weights=self.weights,
                         combined=await self._search_combined())
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
        body = knn_body(query, k, sources, self.layout.knn_method_parameters())
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
            bm25_body(text, k, sources, weights=self.weights,
                      combined=await self._search_combined()),
            knn_body(vec, k, sources, self.layout.knn_method_parameters()),
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
            results.append(self._complete(item, action))
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
        body = hybrid_body(
            text, vec, k, sources, weights=self.weights,
            method_parameters=self.layout.knn_method_parameters(),
            combined=await self._search_combined(),
        )
        action = "searching (server-side hybrid)"
        try:
            response = await self.client.search(
                index=self.layout.alias, body=body, params={"search_pipeline": self.pipeline_name}
            )
        except Exception as exc:
            if is_client_error(exc):
                raise self._errors.from_exception(exc, action) from exc
            raise
        hits = hits_from_response(self._complete(response, action))
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

        See ``opensearch_commit`` for what the commit does and which guarantees hold.
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
                await commit_transaction(self, spool)
        finally:
            spool.close()

    def rebuild(
        self, dim: int | None = None
    ) -> AbstractAsyncContextManager[OpenSearchRebuildWriter]:
        """A writer into a new, empty physical index that replaces the live one on success.

        ``dim`` (the embedding dimension) maps the vector field up front; without it the
        first vector decides. See ``opensearch_commit``.
        """
        return rebuild_index(self, dim)

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


def _query_vector(vector: np.ndarray) -> np.ndarray:
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if not np.isfinite(query).all():
        raise ValueError("the query vector contains NaN or infinity")
    return query

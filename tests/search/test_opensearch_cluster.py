"""The OpenSearch backend against a real cluster: the whole contract, k-NN included.

Runs only when ``OPENSEARCH_URL`` is set (marker ``opensearch``), e.g. against the node of
``deploy/docker-compose.yml``::

    OPENSEARCH_URL=https://admin:<password>@localhost:9200 OPENSEARCH_VERIFY_CERTS=false \\
        .venv/bin/pytest -m opensearch

``OPENSEARCH_CA_CERTS`` names a CA bundle for a private certificate. Each test works on indexes
of its own (a unique prefix) and deletes them afterwards; every request is validated against the
OpenSearch API specification, as in the osmem tests.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from search.fusion import reciprocal_rank_fusion
from search.index.sqlite import SqliteIndex
from search.retriever import Retriever
from tests.search.index_contract import DIM, IndexContract, axis, doc_ids, entry, put, unit
from tests.support.opensearch_fixtures import *  # noqa: F401,F403 - fixtures

if not os.environ.get("OPENSEARCH_URL"):
    pytest.skip("set OPENSEARCH_URL to run against a real OpenSearch cluster",
                allow_module_level=True)

pytestmark = pytest.mark.opensearch


def _client_options() -> dict:
    options: dict = {}
    if os.environ.get("OPENSEARCH_CA_CERTS"):
        options["ca_certs"] = os.environ["OPENSEARCH_CA_CERTS"]
    if os.environ.get("OPENSEARCH_VERIFY_CERTS", "").lower() in ("0", "false", "no"):
        options.update(verify_certs=False, ssl_show_warn=False)
    return options


@pytest.fixture
async def index(real_cluster_url, open_test_index):
    return await open_test_index(real_cluster_url, client_options=_client_options())


class TestOpenSearchIndexOnRealCluster(IndexContract):
    supports_knn = True
    isolated_reads = True


async def test_hybrid_candidates_equal_the_two_searches(index, spec_validator):
    await put(index, *(entry(f"d{i}", f"shared topic number {i}",
                             vectors=[unit(1, i / 10)]) for i in range(8)))
    before = len(spec_validator.requests)
    lexical, semantic = await index.hybrid_candidates("shared topic", axis(0), 5, ["wiki"])
    assert [r.operation.rsplit(".", 1)[0] for r in spec_validator.requests[before:]] == [
        "msearch"]
    assert doc_ids(lexical) == doc_ids(await index.bm25("shared topic", 5, ["wiki"]))
    assert doc_ids(semantic) == doc_ids(await index.knn(axis(0), 5, ["wiki"]))
    assert semantic[0].similarity == pytest.approx(1.0, abs=1e-3)


async def test_knn_filtering_happens_inside_the_graph_search(index):
    # 300 chunks of a big source sit right next to the query; 3 of a small one are far away.
    # A post-filter would cut the top k from the big source and return nothing; the filter
    # inside the knn clause returns the small source's 3.
    await put(index, *(entry(f"big{i}", "x", source="big", vectors=[unit(1, 0.001 * i)])
                       for i in range(300)))
    await put(index, *(entry(f"small{i}", "y", source="small", vectors=[axis(2 + i)])
                       for i in range(3)))
    hits = await index.knn(axis(0), 3, ["small"])
    assert sorted(doc_ids(hits)) == ["small0", "small1", "small2"]


async def test_the_retriever_fuses_the_msearch_candidates(index, tmp_path):
    class Embedder:
        async def embed_query(self, text):
            return axis(0)

    entries = [entry(f"d{i}", f"budget review {'budget ' * (i % 3)}",
                     vectors=[unit(1, i / 4)]) for i in range(10)]
    await put(index, *entries)
    async with SqliteIndex(tmp_path / "index.sqlite3") as embedded:
        await put(embedded, *entries)
        production = await Retriever(index, Embedder()).search("budget", mode="hybrid", k=10)
        reference = reciprocal_rank_fusion(
            [await index.bm25("budget", 100), await index.knn(axis(0), 100)], k=60)
        assert [h.chunk_id for h in production] == [h.chunk_id for h in reference[:10]]
        # HNSW with ef_search 100 over 10 vectors is exact: the dense side matches SQLite's.
        assert doc_ids(await index.knn(axis(0), 10)) == doc_ids(await embedded.knn(axis(0), 10))


async def test_a_rebuild_serves_knn_from_the_new_index(index):
    await put(index, entry("old", "x", vectors=[axis(0)]))
    async with index.rebuild(DIM) as writer:
        await writer.upsert(*entry("new", "y", vectors=[axis(0)]))
    assert doc_ids(await index.knn(axis(0), 5)) == ["new"]
    assert (await index.describe())["index"] == index.layout.physical(2)


async def test_vectors_are_not_kept_in_source(index):
    await put(index, entry("a", "x", vectors=[axis(1)]))
    response = await index.client.search(index=index.layout.alias, body={"query": {
        "term": {"doc_id": "a"}}})
    assert all("vector" not in hit["_source"] for hit in response["hits"]["hits"])
    assert (await index.knn(np.asarray(axis(1)), 1))[0].score == pytest.approx(1.0, abs=1e-3)


async def test_server_side_hybrid_when_the_cluster_has_it(real_cluster_url, open_test_index):
    from search.errors import IndexStoreError

    index = await open_test_index(real_cluster_url, client_options=_client_options(),
                                  server_hybrid="min_max")
    try:
        await index.setup(DIM)
    except IndexStoreError as exc:  # no neural-search plugin, or older than 2.10
        pytest.skip(f"this cluster has no server-side hybrid search: {exc}")
    await put(index, *(entry(f"d{i}", f"budget review {i}", vectors=[unit(1, i / 4)])
                       for i in range(6)))
    hits = await index.server_hybrid_search("budget review", axis(0), 5)
    assert len(hits) == 5 and all(h.similarity is None for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)

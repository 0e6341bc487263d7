"""What only the OpenSearch backend does: buffered commits, alias swaps, retries, error messages.

Runs over real HTTP against osmem-server (a fresh in-memory cluster per test), every request
validated against the OpenSearch API spec; a few tests answer chosen requests themselves (a 429,
a 401, a failure half-way through a commit) through the client's transport.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
from opensearchpy import AuthenticationException, TransportError

import search.index.opensearch as opensearch_module
from search.errors import IndexStoreError
from search.index.opensearch import OpenSearchIndex
from search.index.opensearch_mapping import IndexLayout
from tests.search.index_contract import DIM, axis, doc_ids, entry, put
from tests.support.opensearch_fixtures import *  # noqa: F401,F403 - fixtures

WRITES = {"bulk", "delete_by_query"}


def ops(validator, *, since: int = 0) -> list[str]:
    """Operation groups (``bulk``, ``search``, ``indices.update_aliases``…) sent so far."""
    return [op.rsplit(".", 1)[0] for op in validator.operations()[since:]]


@pytest.fixture
async def index(osmem_url, open_test_index):
    return await open_test_index(osmem_url, bulk_initial_backoff_s=0.01)


async def alias_target(index: OpenSearchIndex) -> str | None:
    return (await index.describe())["index"]


# ---- transactions --------------------------------------------------------------------------------


async def test_a_transaction_sends_nothing_until_it_commits(index, spec_validator):
    await put(index, entry("old", "stable heron"))
    before = len(spec_validator.requests)
    with pytest.raises(RuntimeError):
        async with index.transaction() as writer:
            await writer.upsert(*entry("new", "transient heron"))
            await writer.delete("old")
            raise RuntimeError("boom")
    assert not WRITES & set(ops(spec_validator, since=before))
    assert doc_ids(await index.bm25("heron", 5)) == ["old"]


async def test_a_commit_is_bulk_then_delete_then_bulk_then_refresh(index, spec_validator):
    await put(index, entry("a", "first"))
    before = len(spec_validator.requests)
    await put(index, entry("a", "second", content_hash="v2"), entry("b", "third"))
    sent = [op for op in ops(spec_validator, since=before)
            if op in WRITES | {"indices.refresh"}]
    assert sent == ["indices.refresh", "bulk", "delete_by_query", "bulk", "indices.refresh"]


async def test_a_commit_that_died_half_way_is_repaired_by_the_next_run(osmem_url, open_test_index):
    failing = {"delete_by_query": 0}

    async def die_once(method, url, params, body):
        if url.endswith("/_delete_by_query") and failing["delete_by_query"]:
            failing["delete_by_query"] -= 1
            raise TransportError(500, "node_disconnected_exception", {"error": "gone"})
        return None

    index = await open_test_index(osmem_url, intercept=die_once)
    await put(index, entry("d", "old yak", "old zebra", "old walrus", content_hash="v1"))
    failing["delete_by_query"] = 1
    with pytest.raises(IndexStoreError, match="failed while deleting old records"):
        await put(index, entry("d", "new giraffe", content_hash="v2"))
    # The document record was not rewritten: it still says v1, so the next indexing run
    # sees the document as changed and writes it again...
    assert (await index.documents())["d"].content_hash == "v1"
    await put(index, entry("d", "new giraffe", content_hash="v2"))
    # ...and that commit removes the leftovers of the one that died.
    assert await index.bm25("zebra", 5) == [] and await index.bm25("walrus", 5) == []
    assert [h.text for h in await index.bm25("giraffe", 5)] == ["new giraffe"]
    assert (await index.documents())["d"].content_hash == "v2"
    assert await index.count_records() == (1, 1)


async def test_delete_source_clears_what_came_before_it(index):
    await put(index, entry("w1", "wiki okapi", source="wiki"), entry("w2", "wiki okapi"),
              entry("h1", "handbook okapi", source="handbook"))
    async with index.transaction() as writer:
        await writer.upsert(*entry("w3", "early okapi", source="wiki"))
        await writer.delete_source("wiki")
        await writer.upsert(*entry("w4", "late okapi", source="wiki"))
    assert set(doc_ids(await index.bm25("okapi", 10))) == {"w4", "h1"}
    assert set(await index.documents()) == {"w4", "h1"}


async def test_writes_spill_to_disk_past_the_memory_budget(osmem_url, open_test_index):
    index = await open_test_index(osmem_url, spool_memory_mb=0.001)  # about 1 KB
    await put(index, *(entry(f"d{i}", f"spilled lemur number {i}") for i in range(30)))
    assert len(await index.bm25("lemur", 100)) == 30


async def test_documents_are_listed_page_by_page(index, monkeypatch):
    monkeypatch.setattr(opensearch_module, "_PAGE", 2)
    await put(index, *(entry(f"d{i}", f"text {i}", source="s" if i % 2 else "t")
                       for i in range(5)))
    assert sorted(await index.documents()) == [f"d{i}" for i in range(5)]
    assert sorted(await index.documents("s")) == ["d1", "d3"]


async def test_a_vector_of_another_dimension_is_refused(index):
    await put(index, entry("a", "eight dims"))
    with pytest.raises(IndexStoreError, match="another embedding model"):
        async with index.transaction() as writer:
            await writer.upsert(*entry("b", "four", vectors=[np.ones(4, np.float32) / 2]))
    assert set(await index.documents()) == {"a"}


# ---- bulk retries --------------------------------------------------------------------------------


def _rejected_items(body: str) -> dict:
    lines = [line for line in body.split("\n") if line.strip()]
    items = []
    for line in lines:
        if line.startswith('{"index"'):
            items.append({"index": {"status": 429, "error": {
                "type": "es_rejected_execution_exception", "reason": "queue full"}}})
    return {"took": 1, "errors": True, "items": items}


async def test_bulk_items_rejected_with_429_are_retried(osmem_url, open_test_index, spec_validator):
    rejections = {"items": 1, "request": 1}

    async def overloaded(method, url, params, body):
        if not url.endswith("/_bulk"):
            return None
        if rejections["request"]:
            rejections["request"] -= 1
            raise TransportError(429, "too_many_requests", {"error": "slow down"})
        if rejections["items"]:
            rejections["items"] -= 1
            return _rejected_items(body)
        return None

    index = await open_test_index(osmem_url, intercept=overloaded, bulk_initial_backoff_s=0.01)
    await put(index, entry("a", "persistent marmot"), entry("b", "another marmot"))
    assert rejections == {"items": 0, "request": 0}
    assert set(doc_ids(await index.bm25("marmot", 5))) == {"a", "b"}
    assert ops(spec_validator).count("bulk") >= 4  # 2 commits' bulks + the 2 retried ones


async def test_bulk_rejected_past_the_retries_is_an_error(osmem_url, open_test_index):
    async def always_overloaded(method, url, params, body):
        return _rejected_items(body) if url.endswith("/_bulk") else None

    index = await open_test_index(
        osmem_url, intercept=always_overloaded, bulk_max_retries=2, bulk_initial_backoff_s=0.01
    )
    with pytest.raises(IndexStoreError, match=r"overloaded \(429\)"):
        await put(index, entry("a", "doomed"))


# ---- rebuilds and the alias ----------------------------------------------------------------------


async def test_a_rebuild_swaps_the_alias_in_one_request(index, spec_validator):
    await put(index, entry("old", "previous quokka"))
    first = await alias_target(index)
    before = len(spec_validator.requests)
    async with index.rebuild(DIM) as writer:
        await writer.upsert(*entry("new", "rebuilt quokka"))
        # Readers still see the old index while the new one is built.
        assert doc_ids(await index.bm25("quokka", 5)) == ["old"]
    second = await alias_target(index)
    assert (first, second) == (index.layout.physical(1), index.layout.physical(2))
    swaps = [r for r in spec_validator.requests[before:] if r.operation.startswith(
        "indices.update_aliases")]
    assert [r.body for r in swaps] == [{"actions": [
        {"remove": {"index": first, "alias": index.layout.alias}},
        {"add": {"index": second, "alias": index.layout.alias}},
    ]}]
    assert doc_ids(await index.bm25("quokka", 5)) == ["new"]
    existing = await index.client.indices.get_alias(index=index.layout.pattern)
    assert sorted(existing) == [second]  # the old index is gone after the swap


async def test_a_failed_rebuild_leaves_readers_on_the_old_index(index):
    await put(index, entry("old", "previous quokka"))
    first = await alias_target(index)
    with pytest.raises(RuntimeError):
        async with index.rebuild(DIM) as writer:
            await writer.upsert(*entry("new", "half-built quokka"))
            raise RuntimeError("loader crashed")
    assert await alias_target(index) == first
    assert doc_ids(await index.bm25("quokka", 5)) == ["old"]
    existing = await index.client.indices.get_alias(index=index.layout.pattern)
    assert sorted(existing) == [first]  # the half-built index was deleted


async def test_a_failed_alias_swap_leaves_readers_on_the_old_index(osmem_url, open_test_index):
    async def refuse_swaps(method, url, params, body):
        if url.endswith("/_aliases"):
            raise TransportError(500, "cluster_block_exception", {"error": "blocked"})
        return None

    index = await open_test_index(osmem_url, intercept=refuse_swaps)
    await put(index, entry("old", "previous quokka"))
    first = await alias_target(index)
    with pytest.raises(IndexStoreError, match="moving the alias"):
        async with index.rebuild(DIM) as writer:
            await writer.upsert(*entry("new", "rebuilt quokka"))
    assert await alias_target(index) == first
    assert doc_ids(await index.bm25("quokka", 5)) == ["old"]
    existing = await index.client.indices.get_alias(index=index.layout.pattern)
    assert sorted(existing) == [first]


async def test_a_document_written_twice_in_a_rebuild_keeps_the_last_version(index):
    async with index.rebuild(DIM) as writer:
        await writer.upsert(*entry("d", "first draft", "extra chunk"))
        await writer.upsert(*entry("d", "final text", content_hash="v2"))
        await writer.upsert(*entry("gone", "deleted later"))
        await writer.delete("gone")
    assert await index.count_records() == (1, 1)
    assert (await index.documents())["d"].content_hash == "v2"


async def test_setup_is_idempotent_and_fresh_starts_an_empty_index(index):
    assert await index.setup(DIM) == index.layout.physical(1)
    assert await index.setup(DIM) == index.layout.physical(1)
    await put(index, entry("a", "kept until fresh"))
    with pytest.raises(IndexStoreError, match="another embedding model"):
        await index.setup(DIM * 2)
    assert await index.setup(DIM * 2, fresh=True) == index.layout.physical(2)
    assert await index.documents() == {}
    assert (await index.describe())["dimension"] == DIM * 2


# ---- errors say what to check, and never show the password ---------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_unreachable_cluster_names_the_url_and_the_setting():
    port = _closed_port()
    index = OpenSearchIndex(f"http://lorebot:s3cret-pw@127.0.0.1:{port}", timeout_s=2)
    try:
        with pytest.raises(IndexStoreError) as info:
            await index.bm25("anything", 5)
    finally:
        await index.close()
    message = str(info.value)
    assert f"http://127.0.0.1:{port}" in message and "LOREBOT_OPENSEARCH__URL" in message
    assert "s3cret-pw" not in message and "s3cret-pw" not in repr(info.value.__cause__)
    assert isinstance(info.value.__cause__, TransportError)


async def test_refused_credentials_name_the_settings_not_the_password(osmem_url, open_test_index):
    async def unauthorized(method, url, params, body):
        raise AuthenticationException(401, "security_exception", {"error": {
            "type": "security_exception", "reason": "bad password s3cret-pw"}})

    index = await open_test_index(osmem_url, intercept=unauthorized, password="s3cret-pw",
                                  username="lorebot")
    with pytest.raises(IndexStoreError) as info:
        await index.bm25("anything", 5)
    message = str(info.value)
    assert "401" in message and "LOREBOT_OPENSEARCH__PASSWORD" in message
    assert "s3cret-pw" not in message


async def test_an_index_where_the_alias_belongs_is_named(index):
    await index.client.indices.create(index=index.layout.alias)
    with pytest.raises(IndexStoreError, match="an index named .* exists") as info:
        await put(index, entry("a", "text"))
    assert "INDEX_PREFIX" in str(info.value)


async def test_an_alias_on_two_indexes_is_refused(index):
    await put(index, entry("a", "text"))
    other = index.layout.physical(7)
    await index.client.indices.create(index=other, body={"aliases": {index.layout.alias: {}}})
    with pytest.raises(IndexStoreError, match="must name exactly one"):
        await put(index, entry("b", "text"))


def test_a_bad_prefix_is_refused():
    with pytest.raises(ValueError, match="not a valid index name"):
        IndexLayout(prefix="Lore Bot")


# ---- one round trip for both searches ------------------------------------------------------------


async def test_hybrid_candidates_send_one_msearch(index, spec_validator):
    await put(index, entry("a", "search engine tuning", vectors=[axis(0)]))
    before = len(spec_validator.requests)
    # osmem-server runs the BM25 half but refuses the k-NN half of the same _msearch, so the
    # call fails here; what is checked is that both searches went out, valid, in one request.
    with pytest.raises(IndexStoreError, match="knn"):
        await index.hybrid_candidates("search tuning", axis(0), 10, ["wiki"])
    sent = spec_validator.requests[before:]
    assert [r.operation.rsplit(".", 1)[0] for r in sent] == ["msearch"]
    header, bm25, header2, knn = sent[0].body
    assert header == header2 == {"index": index.layout.alias}
    assert "bool" in bm25["query"] and "knn" in knn["query"]
    assert knn["query"]["knn"]["vector"]["filter"]  # the source filter sits inside knn


async def test_hybrid_candidates_parse_both_answers(osmem_url, open_test_index):
    def hit(doc: str, score: float) -> dict:
        return {"_id": f"c:{doc}#0", "_score": score, "_source": {
            "chunk_id": f"{doc}#0", "doc_id": doc, "source": "wiki", "title": doc, "text": doc,
            "headings": ["H"], "path": None, "url": None}}

    async def answer(method, url, params, body):
        if url.endswith("/_msearch"):
            return {"took": 1, "responses": [
                {"status": 200, "hits": {"hits": [hit("lexical", 7.5)]}},
                {"status": 200, "hits": {"hits": [hit("near", 2.0), hit("far", 0.5)]}},
            ]}
        return None

    index = await open_test_index(osmem_url, intercept=answer)
    lexical, semantic = await index.hybrid_candidates("query", axis(0), 10)
    assert [(h.doc_id, h.score, h.similarity) for h in lexical] == [("lexical", 7.5, None)]
    # faiss inner-product scores back to cosine similarities: 1 + ip, and 1 / (1 - ip).
    assert [(h.doc_id, h.score) for h in semantic] == [("near", 1.0), ("far", -1.0)]
    assert [h.similarity for h in semantic] == [1.0, -1.0]
    assert lexical[0].headings == ("H",)


# ---- optional: fusion on the server --------------------------------------------------------------


async def test_server_hybrid_needs_a_new_enough_cluster(osmem_url, open_test_index):
    async def old_cluster(method, url, params, body):
        if method == "GET" and url == "/":
            return {"version": {"number": "2.11.1", "distribution": "opensearch"}}
        return None

    index = await open_test_index(osmem_url, intercept=old_cluster, server_hybrid="rrf")
    with pytest.raises(IndexStoreError, match=r"needs OpenSearch 2\.19 .* runs 2\.11\.1") as info:
        await index.setup(DIM)
    assert "LOREBOT_OPENSEARCH__SERVER_HYBRID=off" in str(info.value)


async def test_server_hybrid_on_a_cluster_without_search_pipelines(osmem_url, open_test_index):
    # osmem-server has no search pipelines: the error says what is missing and how to opt out.
    index = await open_test_index(osmem_url, server_hybrid="min_max")
    with pytest.raises(IndexStoreError, match="search pipeline") as info:
        await index.setup(DIM)
    assert "SERVER_HYBRID=off" in str(info.value)


async def test_server_hybrid_search_sends_one_hybrid_query(osmem_url, open_test_index,
                                                           spec_validator):
    async def fused(method, url, params, body):
        if url.endswith("/_search") and "hybrid" in body.get("query", {}):
            return {"hits": {"hits": [{"_score": 0.9, "_source": {
                "chunk_id": "a#0", "doc_id": "a", "source": "wiki", "title": "A", "text": "t",
                "headings": [], "path": None, "url": None}}]}}
        return None

    index = await open_test_index(osmem_url, intercept=fused, server_hybrid="rrf")
    hits = await index.server_hybrid_search("deploy", axis(0), 10, ["wiki"])
    assert [(h.doc_id, h.score, h.similarity) for h in hits] == [("a", 0.9, None)]
    [request] = [r for r in spec_validator.requests if "hybrid" in str(r.body)]
    assert request.params == {"search_pipeline": index.pipeline_name}
    bm25, knn = request.body["query"]["hybrid"]["queries"]
    assert "bool" in bm25 and "knn" in knn


async def test_the_retriever_leaves_fusion_to_the_cluster_only_when_asked():
    from search.retriever import Retriever

    class Index:
        server_hybrid = "rrf"

        async def server_hybrid_search(self, query, vector, k, sources=None):
            return ["fused on the server"]

    class Embedder:
        async def embed_query(self, text):
            return axis(0)

    assert await Retriever(Index(), Embedder()).search("q", mode="hybrid", k=3) == [
        "fused on the server"]

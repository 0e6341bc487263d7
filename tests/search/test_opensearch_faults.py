"""Faults on a real three-node cluster (issue 16): nodes stopped under writes and reads, 429s.

These tests stop and restart nodes, so they run only against a cluster they may do that to,
named by ``OPENSEARCH_CLUSTER_DIR`` (marker ``opensearch_cluster``); start it with::

    python3 deploy/opensearch-node/opensearch_node.py start --nodes 3 --dir /dev/shm/os3 \\
        --setting thread_pool.write.size=1 --setting thread_pool.write.queue_size=2
    OPENSEARCH_CLUSTER_DIR=/dev/shm/os3 OPENSEARCH_KNN_ENGINE=lucene \\
        .venv/bin/pytest -m opensearch_cluster tests/search/test_opensearch_faults.py
    python3 deploy/opensearch-node/opensearch_node.py stop --dir /dev/shm/os3

The tiny write pool (one thread, a queue of two) is what makes concurrent bulk writes draw 429
rejections; thread pools cannot be resized on a running node. Each test leaves every node running
and the cluster green (the fixture restarts what a test stopped), and works on indexes of its
own. The client knows all three nodes, so stopping the one it first talks to is a fault it must
ride out, not the end of the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from opensearchpy import AsyncOpenSearch

from search.errors import IndexStoreError
from search.index.opensearch import OpenSearchIndex
from search.index.opensearch_mapping import IndexLayout
from tests.search.index_contract import DIM, entry
from tests.support.opensearch_fixtures import knn_engine_for_tests
from tests.support.opensearch_node import Cluster

pytestmark = [pytest.mark.opensearch, pytest.mark.opensearch_cluster]

N = 120  # documents per index: small (the machine is shared), enough for several bulk requests


@pytest.fixture
def cluster() -> Cluster:
    base = os.environ.get("OPENSEARCH_CLUSTER_DIR")
    if not base:
        pytest.skip("set OPENSEARCH_CLUSTER_DIR to a 3-node cluster from opensearch_node.py "
                    "start --nodes 3 (these tests stop its nodes)")
    cluster = Cluster.attach(Path(base))
    assert len(cluster.nodes) >= 3, f"{base} holds {len(cluster.nodes)} node(s), not 3"
    cluster.wait_green(120, nodes=len(cluster.nodes))
    yield cluster
    # Heal whatever the test left stopped, so the next test starts from a whole cluster.
    for i in range(len(cluster.nodes)):
        if not cluster.running(i):
            cluster.start_node(i)
    cluster.wait_green(180, nodes=len(cluster.nodes))


def _get(cluster: Cluster, path: str):
    for i, node in enumerate(cluster.nodes):
        if cluster.running(i):
            with urllib.request.urlopen(f"{node.url}{path}", timeout=60) as r:
                return json.load(r)
    raise AssertionError("no node is running")


def wait_green(cluster: Cluster, index_name: str) -> None:
    """Until every replica of a freshly written index has recovered: before that, stopping the
    primary's node leaves no in-sync copy, and the index is red until the node returns (a real
    fault, but not the one these tests are about)."""
    health = _get(cluster, f"/_cluster/health/{index_name}?wait_for_status=green&timeout=60s")
    assert health["status"] == "green", health


def _node_of_primary(cluster: Cluster, index_name: str) -> int:
    """The number of the node holding the (first) primary shard of ``index_name``."""
    shards = _get(cluster, f"/_cat/shards/{index_name}?format=json&h=prirep,node,state")
    name = next(s["node"] for s in shards if s["prirep"] == "p" and s["state"] == "STARTED")
    return next(i for i, n in enumerate(cluster.nodes) if n.name == name)


@pytest.fixture
async def make_index(cluster):
    """A factory of ``OpenSearchIndex`` objects on one fresh prefix, with a client that knows
    every node; the prefix's indexes are deleted after the test."""
    prefix = f"lorebot-fault-{uuid.uuid4().hex[:8]}"
    made: list[tuple[OpenSearchIndex, AsyncOpenSearch]] = []

    def factory(**layout) -> OpenSearchIndex:
        options = {k: layout.pop(k) for k in list(layout) if k.startswith(("bulk_", "health_"))}
        client = AsyncOpenSearch(hosts=[n.url for n in cluster.nodes], timeout=20,
                                 max_retries=3, retry_on_timeout=True)
        index = OpenSearchIndex(
            cluster.url, client=client, layout=IndexLayout(
                prefix=prefix, knn_engine=knn_engine_for_tests(), **{"replicas": 1, **layout}),
            **options)
        made.append((index, client))
        return index

    yield factory
    for index, client in made:
        try:
            names = sorted(await client.indices.get_alias(index=index.layout.pattern))
            if names:
                await client.indices.delete(index=",".join(names))
        except Exception:  # noqa: BLE001 - best effort
            pass
        await index.close()
        await client.close()


def corpus(version: str, n: int = N, prefix: str = "d"):
    """Documents whose every chunk says which version of the corpus it belongs to."""
    rng = np.random.default_rng(len(version))
    return [
        entry(f"{prefix}{i}", f"common words {version} document {i}",
              f"second chunk of {prefix}{i} {version}",
              content_hash=f"{version}-{prefix}{i}",
              vectors=[v / np.linalg.norm(v) for v in rng.standard_normal((2, DIM))])
        for i in range(n)
    ]


async def write(index: OpenSearchIndex, entries) -> None:
    async with index.transaction() as writer:
        for doc, chunks, vectors in entries:
            await writer.upsert(doc, chunks, vectors)


async def stored_hashes(index: OpenSearchIndex) -> dict[str, str]:
    return {d: s.content_hash for d, s in (await index.documents()).items()}


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


async def read_versions(index: OpenSearchIndex) -> set[str]:
    """Which corpus versions one full search sees; it must see every document of exactly one."""
    hits = await index.bm25("common words", 4 * N)
    versions = {h.text.split()[2] for h in hits}
    assert len(hits) == N and len(versions) == 1, (len(hits), versions)
    return versions


# ---- a data node stops during a bulk rebuild ---------------------------------------------------

async def test_a_node_stopped_during_a_rebuild_loses_nothing(cluster, make_index):
    index = make_index(bulk_chunk_size=40)
    old = corpus("old")
    await write(index, old)
    wait_green(cluster, (await index._live()).index)
    seen: list[set[str]] = []
    reading = True

    async def reader() -> None:
        # Readers during the rebuild: each sees the old corpus whole or the new one whole.
        while reading:
            try:
                seen.append(await read_versions(index))
            except IndexStoreError as exc:
                one_line(exc)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(reader())
    stopped = None
    outcome: BaseException | None = None
    try:
        async with index.rebuild(DIM) as writer:
            for i, (doc, chunks, vectors) in enumerate(corpus("new")):
                await writer.upsert(doc, chunks, vectors)
                if i == N // 2:
                    await writer.flush()
                    # The node holding the new index's only copy (built without replicas).
                    stopped = _node_of_primary(cluster, writer.target)
                    await asyncio.to_thread(cluster.stop_node, stopped)
    except IndexStoreError as exc:
        outcome = exc
    reading = False
    await task
    assert stopped is not None
    assert seen and all(v <= {"old", "new"} for v in seen)
    if outcome is not None:
        # The rebuild failed with one clear line, and readers never left the old index.
        one_line(outcome)
        expected = {doc.doc_id: doc.content_hash for doc, _, _ in old}
    else:
        expected = {doc.doc_id: f"new-{doc.doc_id}" for doc, _, _ in old}
    assert await stored_hashes(index) == expected
    # Restart: the cluster heals and a rebuild then succeeds with everything.
    await asyncio.to_thread(cluster.start_node, stopped)
    await asyncio.to_thread(cluster.wait_green, 180, nodes=len(cluster.nodes))
    async with index.rebuild(DIM) as writer:
        for doc, chunks, vectors in corpus("again"):
            await writer.upsert(doc, chunks, vectors)
    assert await stored_hashes(index) == {d: f"again-{d}" for d in expected}
    assert await read_versions(index) == {"again"}


# ---- a data node stops during searches ---------------------------------------------------------

async def test_searches_while_a_node_stops_are_answered_or_fail_clearly(cluster, make_index):
    index = make_index()
    await write(index, corpus("live"))
    live = (await index._live()).index
    wait_green(cluster, live)
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    answered, failed = [], []
    searching = True

    async def searcher() -> None:
        while searching:
            try:
                await read_versions(index)
                assert len(await index.knn(query, 10)) == 10
                bm25, knn = await index.hybrid_candidates("common words", query, 10)
                assert (len(bm25), len(knn)) == (10, 10)
                answered.append(1)
            except IndexStoreError as exc:
                failed.append(one_line(exc))
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(searcher()) for _ in range(2)]
    await asyncio.sleep(0.5)
    stopped = _node_of_primary(cluster, live)  # the primary: its replica must take over
    await asyncio.to_thread(cluster.stop_node, stopped)
    # Searches in flight as the node goes may fail (clearly: one_line above); then the replica
    # is promoted and they must be answered again without the node.
    stopped_at, before = asyncio.get_running_loop().time(), len(answered)
    while len(answered) < before + 5:
        assert asyncio.get_running_loop().time() - stopped_at < 90, (
            f"no search answered for 90 s after the stop; failures: {failed[-3:]}")
        await asyncio.sleep(0.2)
    searching = False
    await asyncio.gather(*tasks)
    await asyncio.to_thread(cluster.start_node, stopped)
    await asyncio.to_thread(cluster.wait_green, 180, nodes=len(cluster.nodes))
    assert await stored_hashes(index) == {f"d{i}": f"live-d{i}" for i in range(N)}


async def test_a_search_missing_a_shard_fails_rather_than_answer_with_part(cluster, make_index):
    # Three shards, no replicas: a stopped node takes a third of the documents with it. A search
    # must then fail with one clear line, never return the other two thirds as if complete
    # (OpenSearch's default answers with the shards it has, and says so only in `_shards`).
    index = make_index(shards=3, replicas=0)
    await write(index, corpus("part"))
    live = (await index._live()).index
    assert await read_versions(index) == {"part"}
    shards = _get(cluster, f"/_cat/shards/{live}?format=json&h=node")
    victim = next(i for i, n in enumerate(cluster.nodes)
                  if i > 0 and any(s["node"] == n.name for s in shards))
    await asyncio.to_thread(cluster.stop_node, victim)
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    for search in (lambda: index.bm25("common words", 4 * N), lambda: index.knn(query, 4 * N),
                   lambda: index.hybrid_candidates("common words", query, 4 * N),
                   index.documents, index.source_stats):
        with pytest.raises(IndexStoreError) as caught:
            await search()
        assert "shard" in one_line(caught.value)
    await asyncio.to_thread(cluster.start_node, victim)
    await asyncio.to_thread(cluster.wait_green, 180, nodes=len(cluster.nodes))
    assert await read_versions(index) == {"part"}
    assert len(await stored_hashes(index)) == N


# ---- a rebuild moves the alias only once the new index is as healthy as the old --------------

async def test_a_rebuild_swaps_only_once_the_new_replicas_are_allocated(cluster, make_index):
    index = make_index()
    await write(index, corpus("old"))
    async with index.rebuild(DIM) as writer:
        for doc, chunks, vectors in corpus("new"):
            await writer.upsert(doc, chunks, vectors)
    # No waiting here: the rebuild returned only once the replicas were there.
    live = (await index._live()).index
    assert _get(cluster, f"/_cluster/health/{live}")["status"] == "green"


async def test_a_rebuild_whose_replicas_cannot_be_allocated_keeps_the_old_index(cluster,
                                                                                make_index):
    index = make_index()
    await write(index, corpus("old"))
    old = (await index._live()).index
    # As many replicas as nodes: one copy can never be placed, the new index stays yellow.
    greedy = make_index(replicas=len(cluster.nodes), health_timeout_s=3)
    with pytest.raises(IndexStoreError) as caught:
        async with greedy.rebuild(DIM) as writer:
            for doc, chunks, vectors in corpus("new"):
                await writer.upsert(doc, chunks, vectors)
    assert "green" in one_line(caught.value)
    assert (await index._live()).index == old
    assert sorted(_get(cluster, f"/{index.layout.pattern}/_alias")) == [old]
    assert await stored_hashes(index) == {f"d{i}": f"old-d{i}" for i in range(N)}


# ---- a tiny write queue: 429s ridden out with backoff -------------------------------------------

def _write_rejections(cluster: Cluster) -> int:
    stats = _get(cluster, "/_nodes/stats/thread_pool")
    return sum(n["thread_pool"]["write"]["rejected"] for n in stats["nodes"].values())


async def test_429_rejections_are_ridden_out_with_backoff(cluster, make_index):
    info = _get(cluster, "/_nodes/thread_pool")
    queues = {n["thread_pool"]["write"]["queue_size"] for n in info["nodes"].values()}
    assert queues == {2}, ("start the cluster with --setting thread_pool.write.size=1 "
                             f"--setting thread_pool.write.queue_size=2 (got {queues})")
    options = dict(shards=3, bulk_chunk_size=5, bulk_max_retries=10, bulk_initial_backoff_s=0.1)
    index = make_index(**options)
    await write(index, corpus("seed", 3, "s"))  # the index exists before the writers race
    before = _write_rejections(cluster)
    writers = 8
    # One index object each, as separate processes would be: commits of one object run one
    # at a time, and it takes concurrent bulk requests to overflow a queue.
    await asyncio.gather(*(write(make_index(**options), corpus("w", N // writers, f"w{j}-"))
                           for j in range(writers)))
    rejected = _write_rejections(cluster) - before
    assert rejected > 0, "no 429 was drawn: the test showed nothing"
    expected = {f"w{j}-{i}": f"w-w{j}-{i}" for j in range(writers) for i in range(N // writers)}
    expected.update({f"s{i}": f"seed-s{i}" for i in range(3)})
    assert await stored_hashes(index) == expected

"""The embedded and OpenSearch backends rank the same documents for the same questions.

BM25 runs in each engine (FTS5; OpenSearch's Lucene BM25 as osmem-server implements it). Both
score a chunk as one weighted row (FTS5's ``bm25()`` column weights; OpenSearch a combined field
whose parts are repeated by their weights, see ``test_opensearch_bm25``), but the engines'
formulas still differ in detail (IDF, weights rounded to whole repeats). So scores are never
compared. Rankings are: on a small corpus, for
questions whose relevant documents are clear, the ranked documents are the same; for close calls
(two documents within a few percent in one engine) the order may differ, so there only the
matched documents must. Everything above the index (reciprocal rank fusion, reranking) is shared
code, shown by running the same ``Retriever`` over both backends.

osmem-server rejects k-NN queries, so for the fused (hybrid) ranking the OpenSearch side gets its
k-NN candidates from the embedded index over the same data (a shim, named as such below); on a
real cluster (``OPENSEARCH_URL``) the contract suite covers k-NN itself.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from search.fusion import reciprocal_rank_fusion
from search.index.sqlite import SqliteIndex
from search.retriever import HybridCandidates, Retriever
from tests.search.index_contract import DIM, doc_ids, entry, put, unit
from tests.support.opensearch_fixtures import *  # noqa: F401,F403 - fixtures

CORPUS = [
    ("vpn", "VPN setup", ("Network",),
     "Install the VPN client, then sign in with single sign-on. The VPN reconnects on its own."),
    ("wifi", "Office wifi", ("Network",),
     "The guest wifi password changes every Monday; ask the front desk."),
    ("expenses", "Expense policy", ("Finance",),
     "Submit expense reports within 30 days. Receipts are required for every expense."),
    ("travel", "Travel policy", ("Finance", "Travel"),
     "Book flights through the travel portal. Economy class for flights under six hours."),
    ("oncall", "On-call rotation", ("Engineering",),
     "The on-call engineer answers pages within 15 minutes and hands over on Friday."),
    ("deploy", "Deploying services", ("Engineering", "Releases"),
     "Deploy with the release pipeline; a failed deploy rolls back automatically."),
    ("laptop", "Laptop refresh", ("IT",),
     "Laptops are replaced every three years. Back up your files before the refresh."),
    ("backup", "Backups", ("IT",),
     "Databases are backed up nightly and backups are kept for 35 days."),
    ("holidays", "Public holidays", ("People",),
     "The office is closed on public holidays; the calendar lists them."),
    ("parental", "Parental leave", ("People",),
     "Parents get 16 weeks of paid leave; tell your manager a month ahead."),
    ("tokyo", "東京オフィス", ("Offices",),
     "東京オフィスは渋谷にあります。会議室の予約はポータルから行います。"),
    ("beijing", "北京办公室", ("Offices",),
     "北京办公室位于朝阳区。会议室需要提前在门户网站预订。"),
]

# Questions whose relevant documents are clear: both engines must rank them identically.
QUESTIONS = [
    "how do I connect to the VPN?",
    "wifi password",
    "when are expense reports due?",
    "can I fly business class?",
    "who answers pages at night?",
    "what happens when a deploy fails",
    "how long are backups kept?",
    "laptop replacement",
    "parental leave weeks",
    "backup files",
    "leave on public holidays",
    "release pipeline engineer",
    "network password",
    "flights and laptops",
    "refresh the calendar",
    "会議室の予約",
    "北京办公室在哪里",
    "办公室 オフィス",
]

# Close calls, where the two scoring models may order documents differently (measured on this
# corpus: "office" puts holidays 0.70 vs beijing 0.68 in FTS5; "travel expense receipts" is
# 5.58 vs 5.36 in OpenSearch; "the VPN and the wifi" is a near tie in both; "manager engineer"
# weighs a heading match against a passing mention differently). Here only the set of matching
# documents must agree, and reciprocal rank fusion sees both lists the same way either way.
CLOSE_CALLS = [
    "office",
    "travel expense receipts",
    "the VPN and the wifi",
    "manager engineer",
    "paid leave policy",
    "every week",
    "days",
]


def _vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    return unit(*np.random.default_rng(seed).standard_normal(DIM))


ENTRIES = [
    entry(doc_id, text, title=title, headings=headings, vectors=[_vector(doc_id)])
    for doc_id, title, headings, text in CORPUS
]


class HashEmbedder:
    """A stand-in embedder: a fixed unit vector per text (no model needed)."""

    model_id = "hash"

    async def embed_query(self, text: str) -> np.ndarray:
        return _vector(text)


@pytest.fixture
async def sqlite_index(tmp_path):
    index = SqliteIndex(tmp_path / "index.sqlite3")
    await put(index, *ENTRIES)
    yield index
    await index.close()


@pytest.fixture
async def opensearch_index(osmem_url, open_test_index):
    index = await open_test_index(osmem_url)
    await put(index, *ENTRIES)
    return index


@pytest.mark.parametrize("question", QUESTIONS)
async def test_bm25_ranks_the_same_documents(sqlite_index, opensearch_index, question):
    embedded = doc_ids(await sqlite_index.bm25(question, 10))
    production = doc_ids(await opensearch_index.bm25(question, 10))
    assert embedded, "every question matches something"
    assert production == embedded


@pytest.mark.parametrize("question", CLOSE_CALLS)
async def test_close_calls_match_the_same_documents(sqlite_index, opensearch_index, question):
    embedded = doc_ids(await sqlite_index.bm25(question, 10))
    production = doc_ids(await opensearch_index.bm25(question, 10))
    assert len(embedded) >= 2
    assert sorted(production) == sorted(embedded)


@pytest.mark.parametrize("sources", [["wiki"], ["nowhere"]])
async def test_bm25_with_a_source_filter_ranks_the_same(sqlite_index, opensearch_index, sources):
    for question in QUESTIONS:
        assert doc_ids(await opensearch_index.bm25(question, 10, sources)) == doc_ids(
            await sqlite_index.bm25(question, 10, sources)
        )


async def test_the_retriever_ranks_the_same_over_both_backends(sqlite_index, opensearch_index):
    embedder = HashEmbedder()
    for question in QUESTIONS:
        a = await Retriever(sqlite_index, embedder).search(question, mode="bm25", k=5)
        b = await Retriever(opensearch_index, embedder).search(question, mode="bm25", k=5)
        assert doc_ids(b) == doc_ids(a)


class KnnFromEmbedded:
    """The OpenSearch index, with k-NN candidates from the embedded index over the same data.

    A shim for osmem-server, which rejects k-NN queries: BM25 comes from OpenSearch, k-NN from
    SQLite, and the two lists reach the retriever through ``hybrid_candidates`` exactly as the
    real backend's ``_msearch`` delivers them.
    """

    def __init__(self, opensearch, embedded):
        self.opensearch, self.embedded = opensearch, embedded
        self.calls = 0

    async def bm25(self, query, k, sources=None):
        return await self.opensearch.bm25(query, k, sources)

    async def knn(self, vector, k, sources=None):
        return await self.embedded.knn(vector, k, sources)

    async def hybrid_candidates(self, query, vector, k, sources=None):
        self.calls += 1
        return await self.bm25(query, k, sources), await self.knn(vector, k, sources)


async def test_hybrid_fusion_is_shared_code(sqlite_index, opensearch_index):
    embedder = HashEmbedder()
    shim = KnnFromEmbedded(opensearch_index, sqlite_index)
    assert isinstance(shim, HybridCandidates) and isinstance(opensearch_index, HybridCandidates)
    assert not isinstance(sqlite_index, HybridCandidates)
    for question in QUESTIONS:
        embedded = await Retriever(sqlite_index, embedder).search(question, mode="hybrid", k=8)
        production = await Retriever(shim, embedder).search(question, mode="hybrid", k=8)
        assert [h.chunk_id for h in production] == [h.chunk_id for h in embedded]
        assert [h.score for h in production] == pytest.approx([h.score for h in embedded])
        # And that is plain RRF of the two candidate lists, nothing backend-specific.
        vector = await embedder.embed_query(question)
        expected = reciprocal_rank_fusion([
            await opensearch_index.bm25(question, 100), await sqlite_index.knn(vector, 100)
        ], k=60)[:8]
        assert [h.chunk_id for h in production] == [h.chunk_id for h in expected]
    assert shim.calls == len(QUESTIONS)  # the retriever used the one-round-trip path

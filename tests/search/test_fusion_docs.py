import numpy as np
import pytest

from search.errors import SearchError
from search.fusion import reciprocal_rank_fusion
from search.fusion_docs import document_fusion
from search.models import Hit
from search.retriever import Retriever


def hit(cid: str, similarity: float | None = None) -> Hit:
    return Hit(chunk_id=cid, doc_id=cid.split(":")[0], source="s", title=cid, text="t",
               score=0.0, similarity=similarity)


def ids(hits: list[Hit]) -> list[str]:
    return [h.chunk_id for h in hits]


def test_a_document_found_by_both_sides_through_different_chunks_gets_both_credits():
    # Page P: its table row is BM25's best, its introduction dense's best; page Q has one chunk
    # that is second in both lists. Chunk fusion puts Q first (two credits against one each).
    bm25 = [hit("P:row"), hit("Q:0"), hit("R:0")]
    dense = [hit("P:intro"), hit("Q:0"), hit("S:0")]
    assert ids(reciprocal_rank_fusion([bm25, dense]))[0] == "Q:0"
    fused = document_fusion([bm25, dense], k=60)
    assert [h.doc_id for h in fused][:2] == ["P", "P"]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 61)
    q = next(h for h in fused if h.doc_id == "Q")
    assert q.score == pytest.approx(1 / 62 + 1 / 62)


def test_document_rank_counts_documents_not_chunks():
    # A's three chunks lead the BM25 list: B is the second *document*, rank 2, not rank 4.
    bm25 = [hit("A:0"), hit("A:1"), hit("A:2"), hit("B:0")]
    fused = document_fusion([bm25, []], k=10)
    scores = {h.doc_id: h.score for h in fused}
    assert scores["B"] == pytest.approx(1 / 12)
    assert scores["A"] == pytest.approx(1 / 11)


def test_chunks_come_back_grouped_by_document_best_chunk_first():
    bm25 = [hit("A:2"), hit("B:0"), hit("A:0")]
    dense = [hit("A:0"), hit("B:1"), hit("A:2")]
    fused = document_fusion([bm25, dense])
    # A's chunks first; within A, the chunk-level fusion order (A:2 and A:0 tie; first seen).
    assert ids(fused) == ["A:2", "A:0", "B:0", "B:1"]
    # Every input chunk is returned once, and a known similarity is kept.
    assert sorted(ids(fused)) == sorted({*ids(bm25), *ids(dense)})


def test_weights_and_similarity_and_errors():
    bm25 = [hit("A:0"), hit("B:0")]
    dense = [hit("B:0", similarity=0.9), hit("A:0", similarity=0.5)]
    assert document_fusion([bm25, dense], weights=[2, 1])[0].doc_id == "A"
    fused = document_fusion([bm25, dense], weights=[1, 2])
    assert fused[0].doc_id == "B" and fused[0].similarity == 0.9
    with pytest.raises(ValueError, match="1 weights for 2 rankings"):
        document_fusion([bm25, dense], weights=[1])


class _Lists:
    """An index answering fixed BM25 and k-NN lists (the retriever's fusion is under test)."""

    def __init__(self, bm25: list[Hit], knn: list[Hit]):
        self._bm25, self._knn = bm25, knn

    async def bm25(self, query, k, sources=None):
        return self._bm25[:k]

    async def knn(self, vector, k, sources=None):
        return self._knn[:k]


class _Embedder:
    async def embed_query(self, query):
        return np.zeros(3, dtype=np.float32)


async def test_the_retriever_fuses_at_the_level_it_is_given():
    index = _Lists([hit("P:row"), hit("Q:0")], [hit("P:intro"), hit("Q:0")])
    chunk = Retriever(index, _Embedder(), fusion_level="chunk")
    document = Retriever(index, _Embedder(), fusion_level="document")
    assert ids(await chunk.search("q", mode="hybrid", k=3))[0] == "Q:0"
    assert ids(await document.search("q", mode="hybrid", k=3)) == ["P:row", "P:intro", "Q:0"]
    with pytest.raises(SearchError, match="unknown fusion level 'page'"):
        Retriever(index, _Embedder(), fusion_level="page")

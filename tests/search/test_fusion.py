from search.fusion import reciprocal_rank_fusion
from search.models import Hit


def hit(cid: str, score: float = 0.0, similarity: float | None = None) -> Hit:
    return Hit(chunk_id=cid, doc_id=cid.split(":")[0], source="s", title=cid, text="t",
               score=score, similarity=similarity)


def test_rrf_scores_are_sums_of_reciprocal_ranks():
    bm25 = [hit("a"), hit("b"), hit("c")]
    dense = [hit("c"), hit("a")]
    fused = reciprocal_rank_fusion([bm25, dense], k=60)
    scores = {h.chunk_id: h.score for h in fused}
    # a: 1/61 + 1/62; c: 1/63 + 1/61; b: 1/62
    assert abs(scores["a"] - (1 / 61 + 1 / 62)) < 1e-12
    assert abs(scores["c"] - (1 / 63 + 1 / 61)) < 1e-12
    assert abs(scores["b"] - 1 / 62) < 1e-12
    assert [h.chunk_id for h in fused] == ["a", "c", "b"]


def test_weights_change_the_order():
    bm25 = [hit("a"), hit("b")]
    dense = [hit("b"), hit("a")]
    assert reciprocal_rank_fusion([bm25, dense], weights=[2, 1])[0].chunk_id == "a"
    assert reciprocal_rank_fusion([bm25, dense], weights=[1, 2])[0].chunk_id == "b"


def test_similarity_is_kept_from_the_dense_list_and_inputs_are_not_changed():
    bm25 = [hit("a", score=7.0)]
    dense = [hit("a", score=0.8, similarity=0.8)]
    fused = reciprocal_rank_fusion([bm25, dense])
    assert fused[0].similarity == 0.8
    assert bm25[0].score == 7.0 and bm25[0].similarity is None


def test_ties_keep_first_seen_order_and_zero_weight_drops_a_list():
    fused = reciprocal_rank_fusion([[hit("x")], [hit("y")]])
    assert [h.chunk_id for h in fused] == ["x", "y"]
    only_dense = reciprocal_rank_fusion([[hit("x")], [hit("y")]], weights=[0, 1])
    assert only_dense[0].chunk_id == "y"


def test_mismatched_weights_are_an_error():
    import pytest

    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[hit("x")]], weights=[1, 2])

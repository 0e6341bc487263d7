"""The k-NN engine of the vector field is a layout choice: faiss in production, lucene on nodes
without the k-NN plugin's JNI libraries (the Maven-assembled node of ``deploy/opensearch-node``).
Against a real node the contract suite runs with ``OPENSEARCH_KNN_ENGINE``; these check bodies."""

from __future__ import annotations

import pytest

from search.index.opensearch_mapping import IndexLayout, similarity_from_score


def test_faiss_is_the_default_and_keeps_ef_search_in_the_mapping():
    method = IndexLayout().vector_mapping(4)["method"]
    assert method["engine"] == "faiss"
    assert method["parameters"] == {"m": 16, "ef_construction": 128, "ef_search": 100}
    assert IndexLayout().knn_method_parameters() is None


def test_lucene_takes_ef_search_per_query_not_in_the_mapping():
    # A lucene mapping with ef_search is refused: "Unknown parameter 'ef_search' found".
    layout = IndexLayout(knn_engine="lucene", hnsw_ef_search=64)
    method = layout.vector_mapping(4)["method"]
    assert method["engine"] == "lucene" and method["space_type"] == "innerproduct"
    assert method["parameters"] == {"m": 16, "ef_construction": 128}
    assert layout.knn_method_parameters() == {"ef_search": 64}


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="nmslib"):
        IndexLayout(knn_engine="nmslib")


@pytest.mark.parametrize("ip", [1.0, 0.6, 0.0, -0.6])
def test_both_engines_scores_invert_to_the_inner_product(ip):
    # Measured on the lucene engine of OpenSearch 2.19.1: ip 1 -> 2.0, 0.6 -> 1.6, -0.6 -> 0.625,
    # the same transform faiss's innerproduct uses.
    score = 1 + ip if ip >= 0 else 1 / (1 - ip)
    assert similarity_from_score(score) == pytest.approx(ip)

"""The k-NN engine of the vector field is a layout choice: faiss in production, lucene on nodes
without the k-NN plugin's JNI libraries (the Maven-assembled node of ``deploy/opensearch-node``).
Against a real node the contract suite runs with ``OPENSEARCH_KNN_ENGINE``; these check bodies."""

from __future__ import annotations

import numpy as np
import pytest

from search.index.opensearch_mapping import IndexLayout, similarity_from_score
from tests.search.index_contract import doc_ids, entry, put
from tests.support.opensearch_fixtures import *  # noqa: F401,F403 - fixtures


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


def test_the_knn_query_carries_lucene_ef_search():
    from search.index.opensearch_queries import knn_body

    params = IndexLayout(knn_engine="lucene").knn_method_parameters()
    clause = knn_body(np.ones(4), 5, ["wiki"], params)["query"]["knn"]["vector"]
    assert clause["method_parameters"] == {"ef_search": 100} and clause["k"] == 5
    faiss = knn_body(np.ones(4), 5, None, IndexLayout().knn_method_parameters())
    assert "method_parameters" not in faiss["query"]["knn"]["vector"]


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="nmslib"):
        IndexLayout(knn_engine="nmslib")


@pytest.mark.parametrize("ip", [1.0, 0.6, 0.0, -0.6])
def test_both_engines_scores_invert_to_the_inner_product(ip):
    # Measured on the lucene engine of OpenSearch 2.19.1: ip 1 -> 2.0, 0.6 -> 1.6, -0.6 -> 0.625,
    # the same transform faiss's innerproduct uses.
    score = 1 + ip if ip >= 0 else 1 / (1 - ip)
    assert similarity_from_score(score) == pytest.approx(ip)


# ---- on a real cluster -------------------------------------------------------------------------

def _clustered(rng, n: int, dim: int, centers: np.ndarray) -> np.ndarray:
    # Embedding-like data: points around a few centres, where HNSW with a short candidate list
    # misses neighbours (uniform noise would be easier and tell less).
    x = centers[rng.integers(0, len(centers), n)] + 0.8 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.opensearch
async def test_dense_recall_at_small_k_matches_exact_search(real_cluster_url, open_test_index):
    # k=5 asks the graph for 5 neighbours; with the lucene engine, Lucene's candidate list is
    # then 5 unless the query carries ef_search (measured on 2.19.1, recall@5 without it: 0.90
    # for 1000 x 64, 0.83 for 5000 x 384; 1.00 for both with ef_search 100). faiss reads
    # ef_search from its mapping.
    from tests.search.test_opensearch_cluster import _client_options

    rng = np.random.default_rng(7)
    dim, n = 64, 1000
    centers = rng.standard_normal((20, dim))
    vectors = _clustered(rng, n, dim, centers)
    index = await open_test_index(real_cluster_url, client_options=_client_options())
    await put(index, *(entry(f"d{i}", f"text {i}", vectors=[vectors[i]]) for i in range(n)))
    queries = _clustered(rng, 40, dim, centers)
    found = 0
    for q in queries:
        exact = {f"d{i}" for i in np.argsort(-(vectors @ q))[:5]}
        found += len(exact & set(doc_ids(await index.knn(q, 5))))
    assert found / (5 * len(queries)) >= 0.97

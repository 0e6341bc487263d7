"""The ONNX Runtime backends (search.onnx_backend) against torch, with the real MiniLM weights:
same vectors and reranker scores, one export per model, torch when onnxruntime is missing, and an
index re-embedded when the backend changes."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import sys

import numpy as np
import pytest

from search import onnx_backend
from search.embedding import SentenceTransformerEmbedder, resolve_model_path

pytestmark = pytest.mark.slow

SENTENCES = [
    "How do I reset my password?",
    "Password reset steps: open settings, choose security, then reset.",
    "The cafeteria serves lunch from noon until two.",
    "Vitamin D deficiency is associated with higher fracture risk in older adults.",
    "报销需要提供发票原件。",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh export cache for this module (not the test run's shared one): exports happen here."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_embedder():
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=4)


@pytest.fixture(scope="module")
def int8_embedder(cache):
    e = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=4, backend="onnx-int8",
                                    cache_dir=cache)
    e.warm_up()
    return e


def test_onnx_vectors_match_torch(torch_embedder, int8_embedder, cache):
    fp32 = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=4, backend="onnx",
                                       cache_dir=cache)
    ref = torch_embedder.encode(SENTENCES)
    v32, v8 = fp32.encode(SENTENCES), int8_embedder.encode(SENTENCES)
    assert (fp32.backend, int8_embedder.backend) == ("onnx", "onnx-int8")
    assert v32.shape == v8.shape == ref.shape and v8.dtype == np.float32
    assert np.allclose(np.linalg.norm(v8, axis=1), 1.0, atol=1e-5)
    assert (v32 * ref).sum(1).min() > 0.999
    assert (v8 * ref).sum(1).min() > 0.98
    assert fp32.dim == 384 and fp32.max_tokens == torch_embedder.max_tokens


def test_second_load_reuses_the_export(int8_embedder, cache, monkeypatch):
    files = sorted(cache.rglob("*.onnx"))
    # one model, two exports
    assert [f.parent.name for f in files] == ["fp32", f"int8-v{onnx_backend.INT8_VERSION}"]
    before = {f: f.stat().st_mtime_ns for f in files}

    def no_export(*_args):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_backend, "export_encoder", no_export)
    monkeypatch.setattr(onnx_backend, "quantize_int8", no_export)
    again = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="onnx-int8", cache_dir=cache)
    assert np.allclose(again.encode(SENTENCES[:2]), int8_embedder.encode(SENTENCES[:2]))
    assert {f: f.stat().st_mtime_ns for f in cache.rglob("*.onnx")} == before
    assert not [p for p in cache.rglob(".*") if p.is_dir()]  # no temporary export left behind


def test_missing_onnxruntime_falls_back_to_torch_with_one_log_line(monkeypatch, caplog, cache):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    monkeypatch.setattr(onnx_backend, "_warned", set())
    caplog.set_level(logging.WARNING)
    from search.rerank import CrossEncoderReranker

    embedders = [SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="onnx-int8",
                                             cache_dir=cache) for _ in range(2)]
    reranker = CrossEncoderReranker("all-MiniLM-L6-v2", backend="onnx", cache_dir=cache)
    assert [e.backend for e in embedders] + [reranker.backend] == ["torch"] * 3
    lines = [r.getMessage() for r in caplog.records if "onnxruntime" in r.getMessage()]
    assert len(lines) == 1 and "runs on torch" in lines[0], lines
    assert embedders[0].encode(["hello"]).shape == (1, 384)


def test_identity_follows_the_weights(tmp_path):
    """A model retrained in place, or another model at another path, gets its own export."""
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights v1")
    first = onnx_backend.model_identity(str(model), model)
    assert onnx_backend.model_identity(str(model), model) == first
    (model / "model.safetensors").write_bytes(b"weights v2")
    assert onnx_backend.model_identity(str(model), model) != first
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert onnx_backend.model_identity(str(copy), copy) != onnx_backend.model_identity(
        str(model), model)
    # A registry model is its registry id: the same wherever the data dir is mounted.
    a, b = (tmp_path / d / "models" / "embedder-20260101-000000-1" for d in ("x", "y"))
    for d in (a, b):
        shutil.copytree(model, d)
    assert onnx_backend.model_identity(str(a), a) == onnx_backend.model_identity(str(b), b)


def test_int8_keeps_the_first_and_last_feed_forward_output_in_fp32(int8_embedder, cache):
    import onnx

    [q8] = cache.rglob(f"int8-v{onnx_backend.INT8_VERSION}/*.onnx")
    nodes = onnx.load(str(q8)).graph.node
    plain = {n.name for n in nodes if n.op_type == "MatMul"}
    kept = [n for n in plain if n.endswith("/output/dense/MatMul") and "attention" not in n]
    assert sorted(kept) == ["/inner/encoder/layer.0/output/dense/MatMul",
                            "/inner/encoder/layer.5/output/dense/MatMul"]
    # every other weight multiplication is int8
    assert sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in nodes) >= 30


def test_an_index_of_an_older_int8_recipe_is_not_searched_with_the_new_one(monkeypatch):
    from types import SimpleNamespace

    from search.indexer import Indexer

    embedder = SimpleNamespace(model_id="all-MiniLM-L6-v2", backend="onnx-int8")
    now = Indexer(None, embedder, chunk_tokens=220, chunk_overlap=32).fingerprint
    monkeypatch.setattr(onnx_backend, "INT8_VERSION", onnx_backend.INT8_VERSION - 1)
    before = Indexer(None, embedder, chunk_tokens=220, chunk_overlap=32).fingerprint
    assert now != before and now.endswith(f"|onnx-int8.v{onnx_backend.INT8_VERSION + 1}")


def test_only_the_cpu_runs_onnx(tmp_path):
    assert onnx_backend.effective_backend("onnx-int8", device="cuda", cache_dir=tmp_path) == "torch"
    with pytest.raises(ValueError, match="not one of"):
        onnx_backend.effective_backend("tensorrt")


def test_an_onnx_backend_without_an_export_cache_is_refused_by_name():
    from search.rerank import CrossEncoderReranker

    with pytest.raises(ValueError, match="onnx backend needs a cache_dir"):
        SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="onnx")
    with pytest.raises(ValueError, match="onnx-int8 backend needs a cache_dir"):
        CrossEncoderReranker("all-MiniLM-L6-v2", backend="onnx-int8")
    assert SentenceTransformerEmbedder("all-MiniLM-L6-v2").backend == "torch"  # torch needs none


def test_segment_reranker_scores_match_torch(tmp_path, cache):
    from search import rerank_model
    from search.rerank import CrossEncoderReranker

    path = tmp_path / "reranker"
    rerank_model.build(resolve_model_path("all-MiniLM-L6-v2"), layers=3, max_length=128).save(path)
    query = SENTENCES[0]
    passages = SENTENCES[1:] + ["A much longer passage about resetting passwords. " * 20]
    ref = CrossEncoderReranker(str(path)).scores(query, passages)
    fp32 = CrossEncoderReranker(str(path), backend="onnx", cache_dir=cache)
    int8 = CrossEncoderReranker(str(path), backend="onnx-int8", cache_dir=cache)
    assert np.abs(np.array(fp32.scores(query, passages)) - ref).max() < 1e-4
    q8 = int8.scores(query, passages)
    assert np.abs(np.array(q8) - ref).max() < 0.05
    assert int(np.argmax(q8)) == int(np.argmax(ref)) == 0  # the password passage, both ways
    assert fp32.blend == 1.0 and "torch" not in sys.modules.get("search.rerank_onnx").__dict__


async def test_switching_backend_reembeds_the_index(tmp_path, torch_embedder, int8_embedder):
    from search.index.sqlite import SqliteIndex
    from search.indexer import Indexer
    from search.loaders import discover, iter_documents

    kb = tmp_path / "kb"
    kb.mkdir()
    for i, text in enumerate(SENTENCES):
        (kb / f"doc{i}.md").write_text(f"# Doc {i}\n\n{text}\n")
    path = tmp_path / "index.sqlite3"

    async def run(embedder):
        index = SqliteIndex(path)
        try:
            items = iter_documents(discover([kb]), source="kb", max_bytes=1 << 20)
            return await Indexer(index, embedder).index_documents("kb", items)
        finally:
            await index.close()

    def stored_vectors():
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT vector FROM chunks ORDER BY chunk_id").fetchall()
        return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows])

    assert (await run(torch_embedder)).added == len(SENTENCES)
    torch_vectors = stored_vectors()
    assert (await run(torch_embedder)).unchanged == len(SENTENCES)
    switched = await run(int8_embedder)  # as `lorebot index` after SEARCH__INFERENCE changed
    assert switched.updated == len(SENTENCES) and switched.chunks == len(SENTENCES)
    int8_vectors = stored_vectors()
    assert not np.array_equal(int8_vectors, torch_vectors)  # the int8 model's vectors now
    assert (await run(int8_embedder)).unchanged == len(SENTENCES)
    assert (await run(torch_embedder)).updated == len(SENTENCES)  # and back
    assert np.array_equal(stored_vectors(), torch_vectors)

"""A model promoted or rolled back by another process takes effect in running services at once.

"Another process" is a second ModelRegistry object (and bot.training.promotion) on the same data
dir, as `lorebot models` or a training job in a worker would use it; the services under test
were built before and only search. Real MiniLM, tiny models (tests/search/test_finetune.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bot.settings import Settings
from bot.runtime.services import build_services
from search.adapter import AdaptedEmbedder, QueryAdapter
from search.errors import SearchError
from search.finetune.registry import Candidate, ModelRegistry
from search.models import Document
from search.rerank import hit_text
from search.text import content_hash
from tests.support.tiny_beir import QUESTIONS, TOPICS
from tests.support.tiny_reranker import tiny_reranker  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

BASE = "all-MiniLM-L6-v2"
LEAVE = QUESTIONS["leave"]  # "how long is parental leave"


def _docs(topics=TOPICS) -> list[Document]:
    return [Document(doc_id=f"kb:{d}", source="kb", title=t, text=x,
                     content_hash=content_hash(t, x)) for d, t, x in topics]


def _vectors(path: Path) -> dict[str, np.ndarray]:
    """chunk id -> stored vector, read straight from the index file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {cid: np.frombuffer(blob, dtype=np.float32).copy()
                for cid, blob in conn.execute("SELECT chunk_id, vector FROM chunks")}
    finally:
        conn.close()


def _linked_copy(src: Path, dst: Path) -> Path:
    """A model directory whose files are links to ``src``'s: another model, no 90 MB copy."""
    shutil.copytree(src, dst, copy_function=os.symlink)
    return dst


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "bot.runtime.reload" and r.levelno == logging.ERROR]


def _register(reg: ModelRegistry, cid: str, kind: str) -> None:
    reg.register(Candidate(id=cid, kind=kind, base_model=BASE, data_digest="sha256:test"))
    reg.promote(cid)


@pytest.fixture
async def live(data_dir):
    """Services as a running bot has them, over an index of eight small documents."""
    services = build_services(Settings(_env_file=None), with_llm=False)
    services.reloader.interval_s = 0  # every search checks the registry: no waiting in tests
    await services.indexer.index_documents("kb", _docs())
    yield services
    await services.close()


async def test_a_promoted_adapter_is_used_by_the_next_search_and_rollback_removes_it(live,
                                                                                     data_dir):
    services = live
    (hit,) = await services.retriever.search(LEAVE, mode="dense", k=1)
    assert hit.doc_id == "kb:leave" and not isinstance(services.embedder, AdaptedEmbedder)
    base_query = await services.embedder.embed_query(LEAVE)
    vectors = _vectors(services.settings.index_path)
    # An adapter that pulls every query towards the parking document: its effect is certain.
    adapter = QueryAdapter(np.zeros((384, 384), np.float32), 10 * vectors["kb:parking:0"])
    reg = ModelRegistry(data_dir / "models")  # another process's registry
    adapter.save(reg.path("adapter-1"))
    _register(reg, "adapter-1", "adapter")

    # The registry file is looked at no more than once per interval...
    services.reloader.interval_s = 3600
    (hit,) = await services.retriever.search(LEAVE, mode="dense", k=1)
    assert hit.doc_id == "kb:leave"
    # ... and the next search after it uses the adapter: the query vector is the adapted one.
    services.reloader.interval_s = 0
    (hit,) = await services.retriever.search(LEAVE, mode="dense", k=1)
    assert hit.doc_id == "kb:parking"
    expected = adapter.apply(base_query)
    assert hit.similarity == pytest.approx(float(expected @ vectors[hit.chunk_id]), abs=1e-4)
    assert isinstance(services.embedder, AdaptedEmbedder)
    assert services.reloader.current.adapter == reg.path("adapter-1")

    # Rollback to the base model: no adapter any more.
    assert reg.rollback("adapter") is None
    (hit,) = await services.retriever.search(LEAVE, mode="dense", k=1)
    assert hit.doc_id == "kb:leave"
    assert hit.similarity == pytest.approx(float(base_query @ vectors[hit.chunk_id]), abs=1e-4)
    assert not isinstance(services.embedder, AdaptedEmbedder)
    assert services.retriever.embedder is services.embedder


async def test_a_promoted_reranker_is_used_a_broken_one_is_not_and_rollback_restores(
    live, data_dir, tiny_reranker, caplog  # noqa: F811
):
    from search.rerank import CrossEncoderReranker

    services = live
    answer = await services.pipeline.answer(LEAVE)  # the answer pipeline, as the bot runs it
    assert answer.hits and services.retriever.default_mode == "hybrid"
    assert not services.retriever.has_reranker
    with pytest.raises(SearchError, match="needs a reranker"):
        await services.retriever.search(LEAVE, mode="rerank")
    reg = ModelRegistry(data_dir / "models")
    good = _linked_copy(tiny_reranker, reg.path("reranker-1"))
    _register(reg, "reranker-1", "reranker")

    # The next answer is reranked: its hits carry the cross-encoder's scores.
    answer = await services.pipeline.answer(LEAVE)
    assert services.retriever.has_reranker and services.retriever.default_mode == "rerank"
    assert services.reranker.model_id == str(good)
    scorer = CrossEncoderReranker(str(tiny_reranker))
    expected = scorer.scores(answer.query, [hit_text(h) for h in answer.hits])
    assert [h.score for h in answer.hits] == pytest.approx(expected, abs=1e-4)
    assert await services.retriever.search(LEAVE, mode="rerank", k=3)

    # A candidate that cannot load: logged, and the reranker in use stays.
    broken = reg.path("reranker-2")
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    _register(reg, "reranker-2", "reranker")
    caplog.set_level(logging.INFO, logger="bot.runtime.reload")
    hits = await services.retriever.search(LEAVE, k=3)
    assert hits and services.reranker.model_id == str(good)
    assert services.retriever.default_mode == "rerank"
    (error,) = _errors(caplog)
    assert "cannot load the reranker" in error and str(broken) in error
    assert "keeping the one in use" in error

    # Rolling back the broken one changes nothing; rolling back the good one removes it.
    reg.rollback("reranker")
    await services.retriever.search(LEAVE, k=3)
    assert services.reranker.model_id == str(good)
    reg.rollback("reranker")
    hits = await services.retriever.search(LEAVE, k=3)
    assert hits and services.reranker is None and not services.retriever.has_reranker
    assert services.retriever.default_mode == "hybrid"
    with pytest.raises(SearchError, match="needs a reranker"):
        await services.retriever.search(LEAVE, mode="rerank")
    assert len(_errors(caplog)) == 1


async def test_an_adapter_that_cannot_load_or_does_not_fit_is_not_used(live, data_dir, caplog):
    services = live
    reg = ModelRegistry(data_dir / "models")
    reg.path("adapter-empty").mkdir(parents=True)  # no adapter.npz
    QueryAdapter.identity(8).save(reg.path("adapter-8d"))  # for an 8-dimensional model
    for cid in ("adapter-empty", "adapter-8d"):
        _register(reg, cid, "adapter")
        (hit,) = await services.retriever.search(LEAVE, mode="dense", k=1)
        assert hit.doc_id == "kb:leave" and not isinstance(services.embedder, AdaptedEmbedder)
    errors = _errors(caplog)
    assert len(errors) == 2 and all("cannot load the adapter" in e for e in errors)
    assert "adapter.npz" in errors[0] and "expects 8-d vectors" in errors[1]


async def test_settings_that_pin_the_models_are_respected(
    data_dir, monkeypatch, tiny_reranker  # noqa: F811
):
    reg = ModelRegistry(data_dir / "models")
    QueryAdapter.identity(384).save(reg.path("adapter-1"))
    _linked_copy(tiny_reranker, reg.path("reranker-1"))

    # No registry models at all: nothing is watched, a promotion changes nothing here.
    monkeypatch.setenv("LOREBOT_FINETUNE__USE_REGISTRY", "false")
    async with build_services(Settings(_env_file=None), with_llm=False) as services:
        assert services.reloader is None
        await services.indexer.index_documents("kb", _docs())
        _register(reg, "adapter-1", "adapter")
        assert await services.retriever.search(LEAVE, mode="bm25", k=1)
        assert not isinstance(services.embedder, AdaptedEmbedder)
    reg.rollback("adapter")

    # An explicit reranker wins over the registry's; the registry's adapter is still followed.
    monkeypatch.delenv("LOREBOT_FINETUNE__USE_REGISTRY")
    monkeypatch.setenv("LOREBOT_SEARCH__RERANKER_MODEL", str(tiny_reranker))
    async with build_services(Settings(_env_file=None), with_llm=False) as services:
        services.reloader.interval_s = 0
        configured = services.reranker
        _register(reg, "reranker-1", "reranker")
        _register(reg, "adapter-1", "adapter")
        assert await services.retriever.search(LEAVE, mode="bm25", k=1)
        assert isinstance(services.embedder, AdaptedEmbedder)
        assert services.reranker is configured and configured.model_id == str(tiny_reranker)
        reg.rollback("reranker")
        reg.rollback("adapter")
        assert await services.retriever.search(LEAVE, mode="bm25", k=1)
        assert services.reranker is configured
        assert not isinstance(services.embedder, AdaptedEmbedder)


async def test_a_promoted_embedder_is_used_once_the_index_holds_its_vectors(live, data_dir):
    from bot.training.promotion import promote_embedder, rollback_embedder
    from search.embedding import resolve_model_path

    services = live
    settings = services.settings
    reg = ModelRegistry(data_dir / "models")
    _linked_copy(Path(resolve_model_path(BASE)), reg.path("embedder-1"))
    reg.register(Candidate(id="embedder-1", kind="embedder", base_model=BASE, data_digest="d"))
    candidate = str(reg.path("embedder-1").resolve())

    async with services.reloader.indexing():  # as if a reindex were under way here
        await promote_embedder(settings, reg, "embedder-1", say=lambda _: None)
        # Not during an index run (it would write vectors of two models): meanwhile the index,
        # re-embedded with the candidate, answers no k-NN to the old model's query vectors.
        assert await services.retriever.search(LEAVE, mode="dense", k=1) == []
        assert services.embedder.model_id == BASE
    # Once the run is over, the next search switches: dense search works again.
    (hit,) = await services.retriever.search(LEAVE, mode="dense", k=1)
    assert hit.doc_id == "kb:leave" and services.embedder.model_id == candidate
    assert services.index.embedder_model == candidate
    assert services.indexer.embedder.model_id == candidate
    # The indexer embeds with it too: a reindex is not refused, and re-embeds only the new.
    new = ("canteen", "Canteen hours", "The canteen serves lunch from noon to two.")
    summary = await services.indexer.index_documents("kb", _docs([*TOPICS, new]))
    assert (summary.added, summary.unchanged) == (1, len(TOPICS))
    (hit,) = await services.retriever.search("when is lunch served", mode="dense", k=1)
    assert hit.doc_id == "kb:canteen"

    await rollback_embedder(settings, reg, say=lambda _: None)
    (hit,) = await services.retriever.search(LEAVE, mode="dense", k=1)
    assert hit.doc_id == "kb:leave" and services.embedder.model_id == BASE
    assert services.index.embedder_model == BASE


async def test_a_swap_waits_for_the_searches_in_flight(live, data_dir):
    services = live
    reg = ModelRegistry(data_dir / "models")
    QueryAdapter.identity(384).save(reg.path("adapter-1"))
    async with services.reloader.searching():  # a search under way with the base models
        _register(reg, "adapter-1", "adapter")
        following = asyncio.create_task(services.retriever.search(LEAVE, mode="dense", k=1))
        for _ in range(200):  # the adapter is loaded meanwhile, on the model thread ...
            await asyncio.sleep(0.01)
            if services.reloader.swapping:
                break
        # ... but not swapped in under the search in flight, and the next one waits for it.
        assert services.reloader.swapping and not following.done()
        assert not isinstance(services.embedder, AdaptedEmbedder)
        assert not isinstance(services.retriever.embedder, AdaptedEmbedder)
    (hit,) = await following
    assert hit.doc_id == "kb:leave" and isinstance(services.retriever.embedder, AdaptedEmbedder)

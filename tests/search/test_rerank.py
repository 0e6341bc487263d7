"""The cross-encoder reranker, with a real (but UNTRAINED) MiniLM cross-encoder.

No pretrained cross-encoder is available offline, so ``tiny_reranker`` builds one from the local
MiniLM weights with a fresh classification head (tests/support/tiny_reranker.py). Its scores carry
no relevance signal: these tests check plumbing, shapes, ranges and invariants, never ranking
quality.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from bot.cli.main import main
from search.models import Hit
from search.rerank import CrossEncoderReranker, hit_text
from tests.support.tiny_reranker import (  # noqa: F401 - a fixture
    build_tiny_reranker,
    check_fresh_head,
    tiny_reranker,
)

QUESTION = "How do I choose which files get indexed?"


def hit(n: int, text: str, **kw) -> Hit:
    return Hit(chunk_id=f"d{n}#0", doc_id=f"d{n}", source="kb", title=f"Doc {n}", text=text,
               score=1.0 / n, headings=("Section",), path=f"kb/d{n}.md", similarity=0.5 + n / 100,
               **kw)


HITS = [
    hit(1, "Use --include and --exclude glob patterns to choose files."),
    hit(2, "Hotel costs are reimbursed up to 180 euros per night."),
    hit(3, "Hidden files and folders such as .git are always skipped. " * 8),
    hit(4, "Economy class is required for flights under six hours."),
    hit(5, "lorebot index reads every file under the folder recursively."),
]


def test_settings_are_validated_before_any_model_loads():
    with pytest.raises(ValueError, match="batch_size"):
        CrossEncoderReranker("unused", batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        CrossEncoderReranker("unused", max_length=4)


def test_wiring_passes_the_reranker_settings(data_dir: Path, tmp_path: Path):
    from bot.settings import Settings
    from bot.runtime.services import build_services

    settings = Settings(
        _env_file=None,
        search={"reranker_model": str(tmp_path), "rerank_batch_size": 2, "rerank_max_tokens": 64},
    )
    services = build_services(settings, with_llm=False)  # models load lazily: nothing loads here
    try:
        assert (services.reranker.batch_size, services.reranker.max_length) == (2, 64)
        assert services.retriever.default_mode == "rerank"
    finally:
        asyncio.run(services.close())


@pytest.mark.slow
def test_built_reranker_is_minilm_with_a_fresh_one_logit_head(tiny_reranker: Path, tmp_path):
    from safetensors import safe_open
    from sentence_transformers import CrossEncoder

    from search.embedding import resolve_model_path

    model = CrossEncoder(str(tiny_reranker), device="cpu")
    check_fresh_head(model)  # BertForSequenceClassification, num_labels == 1

    def tensors(path: Path) -> dict:
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}

    base = tensors(Path(resolve_model_path("all-MiniLM-L6-v2")))
    built = tensors(tiny_reranker)
    # The encoder (and pooler) are MiniLM's, unchanged; only the classifier is new.
    assert not any(key.startswith("classifier") for key in base)
    shared = [key for key in base if f"bert.{key}" in built]
    assert len(shared) >= 100
    assert all(base[key].equal(built[f"bert.{key}"]) for key in shared)
    assert built["classifier.weight"].shape == (1, 384)

    # The head's initialisation is seeded: a second build scores identically.
    again = tensors(build_tiny_reranker(tmp_path / "again"))
    assert again["classifier.weight"].equal(built["classifier.weight"])


@pytest.mark.slow
async def test_rerank_returns_rescored_copies_best_first(tiny_reranker: Path):
    reranker = CrossEncoderReranker(str(tiny_reranker))
    ranked = await reranker.rerank(QUESTION, HITS)

    assert sorted(h.chunk_id for h in ranked) == sorted(h.chunk_id for h in HITS)
    scores = [h.score for h in ranked]
    assert scores == sorted(scores, reverse=True)
    # An untrained head: every score is a probability, and they all sit near 0.5.
    assert all(0.4 < s < 0.6 for s in scores), scores
    originals = {h.chunk_id: h for h in HITS}
    for h in ranked:  # copies: only the score changed, the inputs are untouched
        assert replace(h, score=originals[h.chunk_id].score) == originals[h.chunk_id]
    assert [h.score for h in HITS] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert await reranker.rerank(QUESTION, []) == []


@pytest.mark.slow
def test_batch_size_changes_cost_not_scores(tiny_reranker: Path):
    """Padding is masked out, so scoring pairs one by one or all together gives the same scores."""
    texts = [hit_text(h) for h in HITS]
    one = CrossEncoderReranker(str(tiny_reranker), batch_size=1).scores(QUESTION, texts)
    many = CrossEncoderReranker(str(tiny_reranker), batch_size=32).scores(QUESTION, texts)
    assert one == pytest.approx(many, abs=1e-5)


@pytest.mark.slow
def test_max_length_caps_what_the_model_reads(tiny_reranker: Path):
    reranker = CrossEncoderReranker(str(tiny_reranker), max_length=32)
    assert reranker.model.max_seq_length == 32
    passage = "Hidden files and folders are always skipped when a folder is indexed. " * 4
    tail = "Anything written after the cap cannot change the score. " * 20
    short, long = reranker.scores(QUESTION, [passage, passage + tail])
    assert short == pytest.approx(long, abs=1e-6)


@pytest.mark.slow
def test_cli_search_in_rerank_mode(tiny_reranker: Path, data_dir: Path, kb: Path, monkeypatch,
                                   capsys):
    monkeypatch.setenv("LOREBOT_SEARCH__RERANKER_MODEL", str(tiny_reranker))
    assert main(["index", str(kb), "--json"]) == 0
    capsys.readouterr()

    def search(*options: str) -> list[dict]:
        assert main(["search", QUESTION, "--json", *options]) == 0
        return json.loads(capsys.readouterr().out)["hits"]

    hits = search("--mode", "rerank", "-k", "4")
    assert len(hits) == 4
    scores = [h["score"] for h in hits]
    assert all(0.0 <= s <= 1.0 for s in scores), scores
    assert scores == sorted(scores, reverse=True)
    # The reranked hits come from the fused candidates (rerank depth 30 covers this corpus).
    hybrid = {h["doc_id"] + h["text"] for h in search("--mode", "hybrid", "-k", "30")}
    assert {h["doc_id"] + h["text"] for h in hits} <= hybrid
    # With a reranker configured, rerank is the default mode.
    assert search("-k", "4") == hits

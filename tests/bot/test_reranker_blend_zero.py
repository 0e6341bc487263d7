"""A promoted reranker whose blend is 0 keeps the fused order, so it is not run at search time
(issue 17): the services have no reranker, searches are hybrid, and the model is never called;
a blend above 0 is run as before."""

from __future__ import annotations

import pytest

from search.finetune.registry import Candidate
from search.models import Document
from search.text import content_hash
from tests.support.tiny_beir import TOPICS


def _promoted_reranker(settings, blend: float) -> str:
    from bot.runtime.factories import model_registry
    from search import rerank_model
    from search.finetune.data import Example, Passage
    from search.finetune.reranker import RerankerTraining, train_reranker

    reg = model_registry(settings)
    cand = reg.register(Candidate(id=reg.new_id("reranker"), kind="reranker",
                                  base_model="all-MiniLM-L6-v2", data_digest="sha256:0"))
    out = reg.path(cand.id)
    examples = [Example("q1", "Which port does the VPN use?", {"vpn"},
                        [Passage("vpn", "The VPN listens on UDP port 1194.")],
                        [Passage("lunch", "Lunch is served in the canteen from noon.")])]
    train_reranker(examples, out, base_model="all-MiniLM-L6-v2",
                   config=RerankerTraining(max_steps=1, layers=1))
    rerank_model.set_blend(out, blend)
    reg.promote(cand.id)
    return str(out)


@pytest.mark.slow
@pytest.mark.parametrize("blend", [0.0, 0.3])
async def test_a_blend_zero_reranker_is_not_run(data_dir, monkeypatch, blend):
    from bot.runtime.factories import active_models, model_registry
    from bot.runtime.services import build_services
    from bot.settings import Settings
    from search.rerank import CrossEncoderReranker

    settings = Settings(_env_file=None)
    path = _promoted_reranker(settings, blend)
    calls = []
    original = CrossEncoderReranker.scores
    monkeypatch.setattr(CrossEncoderReranker, "scores",
                        lambda self, q, p: calls.append(q) or original(self, q, p))
    services = build_services(settings, with_llm=False)
    async with services:
        await services.indexer.index_documents("kb", [
            Document(doc_id=f"kb:{d}", source="kb", title=t, text=x,
                     content_hash=content_hash(t, x)) for d, t, x in TOPICS])
        hits = await services.retriever.search("How do I set up the VPN?", k=5)
    assert hits
    if blend == 0.0:
        assert active_models(settings, model_registry(settings)).reranker is None
        assert services.reranker is None and services.retriever.default_mode == "hybrid"
        assert calls == []
    else:
        assert active_models(settings, model_registry(settings)).reranker == path
        assert services.retriever.default_mode == "rerank"
        assert calls == ["How do I set up the VPN?"]

"""Fine-tuning: document-disjoint split, feedback pairs, mining, registry, adapter, gate (issue 8)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from search.adapter import AdaptedEmbedder, QueryAdapter
from search.finetune.data import (
    digest,
    feedback_pairs,
    mine_examples,
    split_by_document,
)
from search.finetune.registry import Candidate, ModelRegistry, RegistryError
from search.models import Hit
from search.retriever import Retriever


def _hit(doc_id: str, chunk: int = 0, **kw) -> Hit:
    return Hit(chunk_id=f"{doc_id}#{chunk}", doc_id=doc_id, source="s", title=doc_id.upper(),
               text=f"text of {doc_id}", score=1.0, **kw)


def test_split_puts_no_document_on_both_sides():
    # q1-q2 share d1, q2-q3 share d2: one component; the rest are independent.
    qrels = {"q1": {"d1": 1}, "q2": {"d1": 1, "d2": 1}, "q3": {"d2": 1, "d3": 1},
             **{f"q{i}": {f"d{i}": 1, "shared": 0} for i in range(4, 30)}, "q99": {"dx": 0}}
    split = split_by_document(qrels, val_fraction=0.25, seed=1)
    assert not split.train_docs & split.val_docs
    assert set(split.train) | set(split.validation) == {q for q in qrels if q != "q99"}
    assert not set(split.train) & set(split.validation)
    sides = {q: ("t" if q in split.train else "v") for q in ("q1", "q2", "q3")}
    assert len(set(sides.values())) == 1, "queries sharing a relevant document stay together"
    assert 5 <= len(split.validation) <= 10
    assert split_by_document(qrels, val_fraction=0.25, seed=1) == split  # deterministic


def test_feedback_helpful_gives_positives_and_wrong_source_gives_negatives():
    def rec(rating, question, *paths):
        return {"rating": rating, "answer": {"question": question, "query": question,
                "sources": [{"n": i, "title": p, "path": p} for i, p in enumerate(paths)]}}

    pairs = feedback_pairs([
        rec("helpful", "vpn setup?", "it/vpn.md"),
        rec("wrong_source", "vpn setup?", "travel.pdf"),
        rec("not_helpful", "hotel budget?", "travel.pdf"),
        rec("helpful", "", "x.md"),
    ])
    (qid,) = pairs.queries
    assert pairs.queries[qid] == "vpn setup?"
    assert pairs.positives[qid] == {"it/vpn.md"} and pairs.negatives[qid] == {"travel.pdf"}


async def test_hard_negatives_are_the_retrievers_top_hits_minus_positives():
    async def search(query):
        return [_hit("a"), _hit("p"), _hit("a", 1), _hit("b"), _hit("c")]

    (ex,) = await mine_examples(search, {"q": "question"}, {"q": ["p"]}, negatives=2)
    assert [p.doc_id for p in ex.positives] == ["p"]
    assert [p.doc_id for p in ex.negatives] == ["a", "b"]
    assert [p.doc_id for p in ex.others] == ["c"]  # the rest, one passage per document
    assert ex.positives[0].text.startswith("P\n")  # what the reranker sees: title, then text
    assert digest([ex]) == digest([ex]) and digest([ex]).startswith("sha256:")


def test_registry_records_lists_promotes_and_rolls_back(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    assert reg.active("reranker") is None and reg.candidates() == []
    a = reg.register(Candidate(id=reg.new_id("reranker"), kind="reranker", base_model="m",
                               data_digest="sha256:1", settings={"epochs": 1}))
    b = reg.register(Candidate(id=reg.new_id("reranker"), kind="reranker", base_model="m",
                               data_digest="sha256:2"))
    assert a.id != b.id and [c.id for c in reg.candidates("reranker")] == [a.id, b.id]
    reg.update_metrics(a.id, {"gain": 0.1})
    assert reg.get(a.id).metrics == {"gain": 0.1} and reg.get(a.id).settings == {"epochs": 1}
    reg.promote(a.id)
    reg.promote(b.id)
    assert reg.active("reranker").id == b.id and reg.active_path("reranker") == reg.path(b.id)
    assert reg.rollback("reranker").id == a.id
    assert reg.rollback("reranker") is None
    with pytest.raises(RegistryError):
        reg.rollback("reranker")
    with pytest.raises(RegistryError):
        reg.register(Candidate(id="x", kind="llm", base_model="m", data_digest="d"))
    assert json.loads(reg.file.read_text())["active"] == {"reranker": []}


class _UnitEmbedder:
    model_id = "fake"

    def __init__(self):
        self.queries = []

    async def embed_query(self, text):
        self.queries.append(text)
        return np.array([1.0, 0.0, 0.0], np.float32)

    async def embed_documents(self, texts):
        return np.tile(np.array([1.0, 0.0, 0.0], np.float32), (len(texts), 1))


class _RecordingIndex:
    def __init__(self):
        self.vectors = []

    async def bm25(self, query, k, sources=None):
        return []

    async def knn(self, vector, k, sources=None):
        self.vectors.append(np.array(vector))
        return [_hit("a")]


async def test_the_adapter_changes_query_vectors_and_is_applied_at_query_time(tmp_path):
    weight = np.zeros((3, 3), np.float32)
    weight[0, 1] = 1.0  # moves x towards y
    adapter = QueryAdapter(weight, np.zeros(3, np.float32))
    adapter.save(tmp_path)
    loaded = QueryAdapter.load(tmp_path)
    inner = _UnitEmbedder()
    embedder = AdaptedEmbedder(inner, loaded)
    q = await embedder.embed_query("question")
    assert q == pytest.approx(np.array([1, 1, 0]) / np.sqrt(2))
    assert np.linalg.norm(q) == pytest.approx(1.0)
    # Documents are not adapted: the corpus needs no re-embedding.
    assert (await embedder.embed_documents(["doc"]))[0] == pytest.approx([1, 0, 0])
    assert embedder.model_id == "fake"
    index = _RecordingIndex()
    await Retriever(index, embedder).search("question", mode="dense", k=1)
    assert index.vectors[-1] == pytest.approx(q)
    assert QueryAdapter.identity(3).apply(np.array([0.6, 0.8, 0.0])) == pytest.approx([0.6, 0.8, 0])


# --- the gate, end to end over a tiny BEIR dataset (the real MiniLM, a handful of documents) ----

def _args(dataset, **kw):
    return SimpleNamespace(kind="adapter", dataset=dataset, split="train", epochs=1,
                           max_steps=1, force=False, json=True, **kw)


@pytest.mark.slow
async def test_the_gate_refuses_a_bad_candidate_force_promotes_and_rollback_restores(
    data_dir, tiny_beir, monkeypatch, capsys
):
    from bot.cli.finetune import run_finetune, run_models
    from bot.settings import Settings
    from bot.runtime.services import build_services
    from bot.runtime.factories import model_registry
    import search.finetune.adapter as adapter_training

    def corrupted(examples, *, config, progress=None):
        # A deliberately broken candidate: a random map that scrambles every query vector.
        rng = np.random.default_rng(0)
        dim = examples[0].query.shape[0]
        return QueryAdapter(rng.normal(0, 5, (dim, dim)).astype(np.float32),
                            np.zeros(dim, np.float32)), {"steps": 1}

    monkeypatch.setattr(adapter_training, "train_adapter", corrupted)
    monkeypatch.setenv("LOREBOT_FINETUNE__VAL_FRACTION", "0.5")
    monkeypatch.setenv("LOREBOT_FINETUNE__MIN_GAIN", "0.0001")
    settings = Settings(_env_file=None)
    assert await run_finetune(_args(tiny_beir), settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "adapter" and out["promoted"] is False
    assert out["after"]["ndcg@10"] <= out["before"]["ndcg@10"]
    reg = model_registry(settings)
    assert reg.active("adapter") is None
    (cand,) = reg.candidates("adapter")
    assert cand.id == out["candidate"] and cand.metrics["gate_passed"] is False
    assert cand.data_digest.startswith("sha256:") and cand.training_seconds is not None

    forced = _args(tiny_beir)
    forced.force = True
    assert await run_finetune(forced, settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["promoted"] is True and reg.active("adapter").id == out["candidate"]
    # Promotion takes effect at once: the next services wrap the embedder in the adapter.
    services = build_services(settings, with_llm=False)
    assert isinstance(services.embedder, AdaptedEmbedder)
    await services.close()

    await run_models(SimpleNamespace(action="list", target=None, json=True), settings)
    listed = json.loads(capsys.readouterr().out)
    assert listed["active"]["adapter"] == out["candidate"] and len(listed["candidates"]) == 2

    await run_models(SimpleNamespace(action="rollback", target="adapter", json=False), settings)
    assert reg.active("adapter") is None
    services = build_services(settings, with_llm=False)
    assert not isinstance(services.embedder, AdaptedEmbedder)
    await services.close()


def test_reranker_groups_become_one_dataset_per_group_size():
    """CrossEncoderTrainer draws a batch from one dataset: every row of it has every column."""
    from search.finetune.data import Example, Passage
    from search.finetune.reranker import training_columns, training_groups

    exs = [Example("q1", "vpn?", {"a"}, [Passage("a", "A")],
                   [Passage("n", "N"), Passage("m", "M")]),
           Example("q2", "hotel?", {"b"}, [Passage("b", "B")], []),  # nothing to rank: dropped
           Example("q3", "badge?", {"c"}, [Passage("c", "C")], [Passage("n", "N")])]
    assert training_columns(training_groups(exs)) == {
        "negatives_1": {"query": ["badge?"], "positive": ["C"], "negative_1": ["N"]},
        "negatives_2": {"query": ["vpn?"], "positive": ["A"], "negative_1": ["N"],
                        "negative_2": ["M"]},
    }


def test_reranker_groups_add_other_questions_answers_among_the_hits_as_negatives():
    """A document that is some training question's answer must also be seen losing, for the
    questions it does not answer, or the reranker learns a prior for that document."""
    from search.finetune.data import Example, Passage
    from search.finetune.reranker import training_groups

    def ex(qid, pos, negatives, others):
        return Example(qid, qid + "?", {pos}, [Passage(pos, pos.upper())],
                       [Passage(d, d.upper()) for d in negatives],
                       [Passage(d, d.upper() + " here") for d in others])

    exs = [ex("q1", "a", ["n"], ["x", "b", "a2", "c", "d"]),  # b, c, d: other answers
           ex("q2", "b", ["m"], ["a"]),
           ex("q3", "c", ["n"], []),
           ex("q4", "d", [], ["y"])]  # no hard negative and no other answer: still dropped
    assert training_groups(exs) == [("q1?", ["A", "N"]), ("q2?", ["B", "M"]),
                                    ("q3?", ["C", "N"])]
    # Up to the setting's count, best first, as this question's hit showed them; never its own
    # answer, never a document no training question is about.
    assert training_groups(exs, prior_negatives=2) == [
        ("q1?", ["A", "N", "B here", "C here"]), ("q2?", ["B", "M", "A here"]),
        ("q3?", ["C", "N"])]

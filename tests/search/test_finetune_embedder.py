"""Embedder fine-tuning (issue 8): training, the gate on a re-embedded copy, promotion and rollback
through one transaction readers never see half-done, and readers never mixing two models."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import shutil
import sqlite3
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from search.errors import IndexStoreError
from search.finetune.data import Example, Passage
from search.finetune.embedder import training_columns, training_rows
from search.models import Chunk, Document
from search.text import content_hash
from tests.support.tiny_beir import QUESTIONS, TOPICS

BASE = "all-MiniLM-L6-v2"


# --- helpers ------------------------------------------------------------------------------------


def _docs(source="kb", topics=TOPICS):
    return [Document(doc_id=f"{source}:{d}", source=source, title=t, text=x,
                     content_hash=content_hash(t, x)) for d, t, x in topics]


def _stored(path) -> dict[str, tuple[str, np.ndarray]]:
    """chunk id -> (the text the embedder saw, stored vector), read straight from the file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT c.chunk_id, d.title, c.headings, c.text, c.vector "
                            "FROM chunks c JOIN documents d ON d.doc_id = c.doc_id").fetchall()
    finally:
        conn.close()
    return {cid: (Chunk(cid, "", 0, text, title, tuple(json.loads(h))).embedding_text(),
                  np.frombuffer(blob, dtype=np.float32).copy())
            for cid, title, h, text, blob in rows}


def _pin(path):
    from search.index.sqlite_reembed import stored_embedder

    return stored_embedder(path)


def _assert_vectors_of(path, embedder):
    stored = _stored(path)
    assert stored
    ids = list(stored)
    expected = embedder.encode([stored[c][0] for c in ids])
    for cid, vec in zip(ids, expected):
        assert stored[cid][1] == pytest.approx(vec, abs=2e-4), cid


def _same_vectors(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[c][1], b[c][1]) for c in a)


def _args(dataset, **kw):
    base = dict(kind="embedder", dataset=dataset, split="train", epochs=1, max_steps=2,
                force=False, json=True)
    return SimpleNamespace(**{**base, **kw})


# --- training data ------------------------------------------------------------------------------


def test_rows_deal_hard_negatives_and_rows_without_one_get_a_dataset_of_their_own():
    exs = [Example("q1", "vpn?", {"a"}, [Passage("a", "A"), Passage("b", "B")],
                   [Passage("n", "N1"), Passage("m", "N2")]),
           Example("q2", "hotel?", {"a"}, [Passage("a", "A")], []),
           Example("q3", "badge?", {"c"}, [Passage("c", "C")], [Passage("n", "N1")])]
    rows = training_rows(exs)
    assert rows == [("vpn?", "A", "N1"), ("vpn?", "B", "N2"), ("hotel?", "A", None),
                    ("badge?", "C", "N1")]
    # The trainer draws a batch from one dataset: every row of it has every column.
    assert training_columns(rows) == {
        "with_negative": {"anchor": ["vpn?", "vpn?", "badge?"], "positive": ["A", "B", "C"],
                          "negative": ["N1", "N2", "N1"]},
        "without_negative": {"anchor": ["hotel?"], "positive": ["A"]},
    }
    assert list(training_columns(rows[:2])) == ["with_negative"]


# --- OpenSearch is refused up front ------------------------------------------------------------


async def test_embedder_promotion_is_refused_on_opensearch_before_any_work(data_dir, tiny_beir,
                                                                         monkeypatch):
    from bot.console import CliError
    from bot.cli.finetune import run_finetune, run_models
    from bot.settings import Settings
    from bot.runtime.factories import model_registry
    from search.finetune.registry import Candidate

    monkeypatch.setenv("LOREBOT_SEARCH__BACKEND", "opensearch")
    settings = Settings(_env_file=None)
    with pytest.raises(CliError, match="opensearch migrate"):
        await run_finetune(_args(tiny_beir), settings)
    assert not (data_dir / "eval").exists()  # refused before indexing or training anything
    reg = model_registry(settings)
    reg.register(Candidate(id="embedder-x", kind="embedder", base_model=BASE, data_digest="d"))
    with pytest.raises(CliError, match="LOREBOT_SEARCH__BACKEND=sqlite"):
        await run_models(SimpleNamespace(action="promote", target="embedder-x", json=False),
                         settings)
    assert reg.active("embedder") is None


# --- the gate, promotion, eval and rollback, end to end ------------------------------------------


@pytest.mark.slow
async def test_gate_refuses_bad_candidate_force_promotes_reembeds_and_rollback_restores(
    data_dir, tiny_beir, monkeypatch, capsys
):
    from bot.training.evaluation import _index_corpus, run_eval
    from bot.cli.finetune import run_finetune, run_models
    from bot.settings import Settings
    from bot.runtime.services import build_services
    from bot.runtime.factories import model_registry
    from search.adapter import AdaptedEmbedder, QueryAdapter
    from search.embedding import SentenceTransformerEmbedder
    from search.evaluation import load_beir
    from search.finetune.registry import Candidate

    for key, value in {"VAL_FRACTION": "0.5", "MIN_GAIN": "0.0001", "EMBEDDER_BATCH_SIZE": "4",
                       "EMBEDDER_MAX_TOKENS": "64", "EMBEDDER_FIT_FUSION": "true"}.items():
        monkeypatch.setenv(f"LOREBOT_FINETUNE__{key}", value)
    settings = Settings(_env_file=None)
    live, gate_index = settings.index_path, data_dir / "eval" / "tiny.sqlite3"
    gate_index.parent.mkdir(parents=True)
    # The bot's own index, and the dataset's index the gate evaluates on: both base vectors.
    async with build_services(settings, with_llm=False) as services:
        await services.indexer.index_documents("kb", _docs())
    async with build_services(settings, index_path=gate_index, with_llm=False) as services:
        await _index_corpus(services, load_beir(tiny_beir, "train"))
    base = SentenceTransformerEmbedder(BASE)
    live_before, gate_before = _stored(live), _stored(gate_index)
    inodes = (os.stat(live).st_ino, os.stat(gate_index).st_ino)

    # 1. A candidate that cannot win (a learning rate that wrecks the model) is refused.
    monkeypatch.setenv("LOREBOT_FINETUNE__EMBEDDER_LEARNING_RATE", "1.0")
    assert await run_finetune(_args(tiny_beir), Settings(_env_file=None)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "embedder" and out["promoted"] is False
    assert out["after"]["ndcg@10"] <= out["before"]["ndcg@10"]
    reg = model_registry(settings)
    (bad,) = reg.candidates("embedder")
    assert bad.id == out["candidate"] and reg.active("embedder") is None
    assert bad.base_model == BASE and 1 <= bad.settings["steps"] <= 2
    assert list((reg.path(bad.id) / "indexes").glob("*.sqlite3"))  # the gate's re-embedded copy
    # ... and both indexes are untouched: same files, same vectors, no model recorded.
    assert (os.stat(live).st_ino, os.stat(gate_index).st_ino) == inodes
    assert _same_vectors(_stored(live), live_before)
    assert _same_vectors(_stored(gate_index), gate_before)
    assert _pin(live) is None and _pin(gate_index) is None

    # 2. --force promotes a candidate: every index is re-embedded with it, then it is active.
    monkeypatch.delenv("LOREBOT_FINETUNE__EMBEDDER_LEARNING_RATE")
    assert await run_finetune(_args(tiny_beir, force=True), settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["promoted"] is True and reg.active("embedder").id == out["candidate"]
    cand_id = str(reg.path(out["candidate"]).resolve())
    cand = SentenceTransformerEmbedder(cand_id)
    assert _pin(live) == cand_id and _pin(gate_index) == cand_id
    _assert_vectors_of(live, cand)  # embedded at promotion
    _assert_vectors_of(gate_index, cand)  # taken from the gate's candidate index
    assert not _same_vectors(_stored(live), live_before)
    # The gate fitted the RRF dense weight that goes with it (on the held-out questions), saved
    # it with the model, and every process that loads the model fuses with it.
    from search.finetune.fusion_fit import FACTORS
    from search.fusion_weights import saved_dense_factor

    factor = out["dense_factor"]
    assert factor in FACTORS and saved_dense_factor(cand_id) == factor
    fit = reg.get(out["candidate"]).metrics["fusion"]
    assert fit["dense_factor"] == factor and set(fit["ndcg@10_by_factor"]) == {
        f"{x:g}" for x in FACTORS}
    # Queries now use the candidate with the re-embedded index.
    async with build_services(settings, with_llm=False) as services:
        assert services.embedder.model_id == cand_id
        assert services.retriever.fusion_for("parking").dense == pytest.approx(factor)
        hits = await services.retriever.search("who issues parking permits", mode="dense", k=3)
        query = cand.encode(["who issues parking permits"])[0]
        assert hits and hits[0].doc_id == "kb:parking"
        stored = _stored(live)
        for hit in hits:
            assert hit.similarity == pytest.approx(float(query @ stored[hit.chunk_id][1]),
                                                   abs=1e-4)
    # An adapter trained for the base model is not applied to the new embedder's queries.
    QueryAdapter.identity(384).save(reg.path("adapter-base"))
    reg.register(Candidate(id="adapter-base", kind="adapter", base_model=BASE, data_digest="d"))
    reg.promote("adapter-base")
    services = build_services(settings, with_llm=False)
    assert not isinstance(services.embedder, AdaptedEmbedder)
    await services.close()
    reg.rollback("adapter")

    # `lorebot eval` uses the active embedder, and its index, re-embedded at promotion, counts
    # as unchanged: nothing is embedded twice.
    eval_args = SimpleNamespace(dataset=tiny_beir, questions=None, split="train", mode="dense",
                                max_queries=2, json=None)
    assert await run_eval(eval_args, settings) == 0
    assert "0 added, 0 updated, 8 unchanged" in capsys.readouterr().err
    _assert_vectors_of(gate_index, cand)

    # 3. Rollback: the previous vectors come back with the previous model, in every index.
    await run_models(SimpleNamespace(action="rollback", target="embedder", json=False), settings)
    assert reg.active("embedder") is None
    assert _pin(live) == BASE and _pin(gate_index) == BASE
    assert _same_vectors(_stored(live), live_before)  # the kept copy, bit for bit
    _assert_vectors_of(gate_index, base)
    async with build_services(settings, with_llm=False) as services:
        assert services.embedder.model_id == BASE
        assert services.retriever.fusion_for("parking").dense == 1.0
        hits = await services.retriever.search("who issues parking permits", mode="dense", k=1)
        assert hits[0].doc_id == "kb:parking"


# --- readers during a promotion ------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A real second embedder of the same size: MiniLM after one training step."""
    from search.embedding import SentenceTransformerEmbedder
    from search.finetune.embedder import EmbedderTraining, train_embedder

    out = tmp_path_factory.mktemp("models") / "embedder-1"
    examples = [Example(d, QUESTIONS[d], {d}, [Passage(d, f"{t}\n{x}")]) for d, t, x in TOPICS]
    train_embedder(examples, out, base_model=BASE,
                   config=EmbedderTraining(batch_size=8, max_steps=1, learning_rate=1e-3))
    return SentenceTransformerEmbedder(str(out.resolve()))


@pytest.mark.slow
async def test_open_readers_never_pair_query_and_chunk_vectors_of_two_models(tmp_path,
                                                                               other_model):
    from search.embedding import SentenceTransformerEmbedder
    from search.index.sqlite import SqliteIndex
    from search.index.sqlite_reembed import reembed
    from search.indexer import Indexer
    from search.models_runtime import run_model

    base, new = SentenceTransformerEmbedder(BASE), other_model
    path = tmp_path / "index.sqlite3"
    async with SqliteIndex(path) as index:
        await Indexer(index, base).index_documents("kb", _docs())
    # Recorded as base vectors (as after an earlier rollback), so a reader with the new model
    # can be open before the promotion too. (A file never re-embedded records no model; no
    # process loads the new model before the promotion has committed, see bot.training.promotion.)
    await run_model(reembed, path, base.encode, base.model_id)
    texts = {c: t for c, (t, _) in _stored(path).items()}
    edited = Document(doc_id="kb:badge", source="kb", title="Lost badge",
                      text="Report a lost badge to the front desk at once.", content_hash="x")
    edited_chunks = [Chunk("kb:badge:0", "kb:badge", 0, edited.text, edited.title)]
    edited_text = edited_chunks[0].embedding_text()
    # Every vector each model can give each chunk (the edited chunk has two texts).
    vectors = {}
    for name, model in (("base", base), ("new", new)):
        ids = list(texts)
        rows = model.encode([texts[c] for c in ids] + [edited_text])
        vectors[name] = {c: [r] for c, r in zip(ids, rows)}
        vectors[name]["kb:badge:0"].append(rows[-1])
    question = "I lost my access badge"
    queries = {"base": base.encode([question])[0], "new": new.encode([question])[0]}

    old_reader = SqliteIndex(path, embedder_model=base.model_id)  # a process started before
    new_reader = SqliteIndex(path, embedder_model=new.model_id)  # a process started after
    seen = {"base": 0, "new": 0, "empty": 0, "reads": 0}
    done = asyncio.Event()

    async def read_forever():
        while not done.is_set():
            for name, index in (("base", old_reader), ("new", new_reader)):
                hits = await index.knn(queries[name], 8)
                seen["reads"] += 1
                seen[name if hits else "empty"] += 1
                for hit in hits:  # every score must come from this model's vectors
                    assert any(hit.similarity == pytest.approx(float(queries[name] @ v), abs=1e-4)
                               for v in vectors[name][hit.chunk_id]), (name, hit.chunk_id)
            await asyncio.sleep(0)

    # The re-embed is slowed down, and a reindex by the old process commits between its two
    # phases, so readers run before, during and after its write transaction.
    first_call, reindexed = threading.Event(), threading.Event()

    def slow_encode(texts):
        if not first_call.is_set():
            first_call.set()
            assert reindexed.wait(30)
        threading.Event().wait(0.3)
        return new.encode(texts)

    async def reindex_meanwhile():
        while not first_call.is_set():
            await asyncio.sleep(0.01)
        async with old_reader.transaction() as writer:  # unpinned file: the old model may write
            await writer.upsert(edited, edited_chunks, base.encode([edited_text]))
        reindexed.set()

    reader = asyncio.create_task(read_forever())
    try:
        await asyncio.sleep(0.2)
        summary, _ = await asyncio.gather(
            run_model(reembed, path, slow_encode, new.model_id, batch_size=2),
            reindex_meanwhile())
    finally:
        await asyncio.sleep(0.2)
        done.set()
        await reader
    assert summary.embedded == len(texts)  # 7 ahead of the write, the edited one inside it
    assert seen["base"] > 0 and seen["new"] > 0 and seen["reads"] > 10
    # Afterwards: the old process answers no k-NN rather than mixing; the new one answers.
    assert await old_reader.knn(queries["base"], 8) == []
    hits = await new_reader.knn(queries["new"], 8)
    assert hits[0].chunk_id == "kb:badge:0"
    assert _stored(path)["kb:badge:0"][1] == pytest.approx(vectors["new"]["kb:badge:0"][1],
                                                           abs=2e-4)
    # A write by the old process would mix models: refused, nothing changes.
    before = _stored(path)
    with pytest.raises(IndexStoreError, match="restart lorebot"):
        async with old_reader.transaction() as writer:
            doc = _docs()[0]
            chunk = Chunk(f"{doc.doc_id}:0", doc.doc_id, 0, doc.text, doc.title)
            await writer.upsert(doc, [chunk], base.encode([chunk.embedding_text()]))
    assert _same_vectors(_stored(path), before) and _pin(path) == new.model_id
    await old_reader.close()
    await new_reader.close()


# --- reindexing after a promotion or rollback ----------------------------------------------------
# A re-embed keeps the stored content hashes, which name the model they were computed with; the
# file records that model (meta.hash_model), so the next reindex re-embeds only what changed.


def _hashes(path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT doc_id, content_hash FROM documents"))
    finally:
        conn.close()


def _meta(path) -> dict:
    from search.index.sqlite_reembed import read_meta

    return read_meta(path)


def _edited(docs, doc_id, text):
    return [dataclasses.replace(d, text=text, content_hash=content_hash(d.title, text))
            if d.doc_id == doc_id else d for d in docs]


async def _reindex(settings, docs, model):
    from bot.runtime.services import build_services

    async with build_services(settings, with_llm=False) as services:
        assert services.embedder.model_id == model
        return await services.indexer.index_documents("kb", docs)


@pytest.mark.slow
async def test_reindex_after_promotion_and_rollback_embeds_only_what_changed(data_dir,
                                                                             other_model):
    from bot.training.promotion import promote_embedder, rollback_embedder
    from bot.settings import Settings
    from bot.runtime.factories import model_registry
    from search.embedding import SentenceTransformerEmbedder
    from search.finetune.registry import Candidate

    settings = Settings(_env_file=None)
    live, docs, n = settings.index_path, _docs(), len(TOPICS)
    first = await _reindex(settings, docs, BASE)
    assert first.added == n
    base_hashes = _hashes(live)
    reg = model_registry(settings)
    shutil.copytree(other_model.path, reg.path("embedder-1"))  # the 1-step candidate
    reg.register(Candidate(id="embedder-1", kind="embedder", base_model=BASE, data_digest="d"))
    await promote_embedder(settings, reg, "embedder-1", say=lambda _: None)
    cand_id = str(reg.path("embedder-1").resolve())
    cand = SentenceTransformerEmbedder(cand_id)
    assert _pin(live) == cand_id and _meta(live)["hash_model"] == BASE
    assert _hashes(live) == base_hashes  # the re-embed kept them

    # Same content, the promoted model: nothing is embedded again.
    same = await _reindex(settings, docs, cand_id)
    assert (same.added, same.updated, same.unchanged, same.chunks) == (0, 0, n, 0)
    promoted = _stored(live)
    _assert_vectors_of(live, cand)
    # A changed document is embedded with the promoted model, and only that one.
    docs = _edited(docs, "kb:vpn", "The VPN client is now WireGuard; install it from the portal.")
    changed = await _reindex(settings, docs, cand_id)
    assert (changed.updated, changed.unchanged, changed.chunks) == (1, n - 1, 1)
    after = _stored(live)
    assert _same_vectors({c: v for c, v in after.items() if not c.startswith("kb:vpn")},
                         {c: v for c, v in promoted.items() if not c.startswith("kb:vpn")})
    _assert_vectors_of(live, cand)
    # ... with a hash of the same recorded model, so it too stays unchanged next time.
    again = await _reindex(settings, docs, cand_id)
    assert (again.unchanged, again.chunks) == (n, 0)

    # Rollback: the previous vectors come back (the edited chunk embedded by the base model),
    # and the next reindex embeds nothing again.
    await rollback_embedder(settings, reg, say=lambda _: None)
    base = SentenceTransformerEmbedder(BASE)
    assert _pin(live) == BASE and _meta(live)["hash_model"] == BASE
    _assert_vectors_of(live, base)
    same = await _reindex(settings, docs, BASE)
    assert (same.added, same.updated, same.unchanged, same.chunks) == (0, 0, n, 0)
    docs = _edited(docs, "kb:parking", "Parking permits are issued by reception, not facilities.")
    changed = await _reindex(settings, docs, BASE)
    assert (changed.updated, changed.unchanged, changed.chunks) == (1, n - 1, 1)
    _assert_vectors_of(live, base)
    # The base model's hashes again: what this file held before the promotion.
    assert {d: h for d, h in _hashes(live).items() if d not in ("kb:vpn", "kb:parking")} == {
        d: h for d, h in base_hashes.items() if d not in ("kb:vpn", "kb:parking")}


@pytest.mark.slow
async def test_a_model_changed_by_hand_still_reembeds_everything(tmp_path, other_model):
    from search.embedding import SentenceTransformerEmbedder
    from search.index.sqlite import SqliteIndex
    from search.index.sqlite_reembed import reembed
    from search.indexer import Indexer
    from search.models_runtime import run_model

    base, n = SentenceTransformerEmbedder(BASE), len(TOPICS)

    async def index_with(path, model):
        async with SqliteIndex(path, embedder_model=model.model_id) as index:
            return await Indexer(index, model).index_documents("kb", _docs())

    # A file never re-embedded, then LOREBOT_SEARCH__EMBEDDING_MODEL changed: all re-embedded.
    plain = tmp_path / "plain.sqlite3"
    await index_with(plain, base)
    summary = await index_with(plain, other_model)
    assert (summary.updated, summary.unchanged) == (n, 0)
    _assert_vectors_of(plain, other_model)

    # A re-embedded file (vectors of `other`, hashes of the base model), then a third model by
    # hand (same weights under another name, so a real model): its hashes name the base model,
    # its vectors are not the third model's: all re-embedded, and the file is its own again.
    promoted = tmp_path / "promoted.sqlite3"
    await index_with(promoted, base)
    await run_model(reembed, promoted, other_model.encode, other_model.model_id,
                    previous_model=BASE)
    assert _meta(promoted)["hash_model"] == BASE
    third_dir = tmp_path / "third-model"
    shutil.copytree(other_model.path, third_dir)
    third = SentenceTransformerEmbedder(str(third_dir))
    summary = await index_with(promoted, third)
    assert (summary.updated, summary.unchanged) == (n, 0)
    assert _pin(promoted) == third.model_id and "hash_model" not in _meta(promoted)
    again = await index_with(promoted, third)
    assert (again.unchanged, again.chunks) == (n, 0)


@pytest.mark.slow
async def test_an_index_without_the_new_meta_keeps_its_hashes_valid(tmp_path, other_model):
    from search.embedding import SentenceTransformerEmbedder
    from search.index.sqlite import SqliteIndex
    from search.index.sqlite_reembed import reembed
    from search.indexer import Indexer
    from search.models_runtime import run_model

    base, n, path = SentenceTransformerEmbedder(BASE), len(TOPICS), tmp_path / "index.sqlite3"
    async with SqliteIndex(path, embedder_model=BASE) as index:
        await Indexer(index, base).index_documents("kb", _docs())
        # The hashes are what files built before hash_model existed hold (model id, chunk
        # tokens and overlap), plus the chunking version (issue 21: a new chunking re-chunks
        # every file once), so files of this version need no re-embedding on upgrade.
        from search.chunking import CHUNKING_VERSION

        assert _hashes(path) == {
            d.doc_id: content_hash(d.content_hash, f"{BASE}|220|32|c{CHUNKING_VERSION}")
            for d in _docs()}
        assert not {"embedder", "hash_model"} & _meta(path).keys()
        summary = await Indexer(index, base).index_documents("kb", _docs())
    assert (summary.unchanged, summary.chunks) == (n, 0)

    # A file promoted before this change (pinned to its new model, no hash_model): the next
    # re-embed takes the pinned model as the hashes' model, not the caller's guess.
    await run_model(reembed, path, other_model.encode, other_model.model_id)
    assert _pin(path) == other_model.model_id and "hash_model" not in _meta(path)
    await run_model(reembed, path, base.encode, BASE, previous_model="some-other-model")
    assert _meta(path)["hash_model"] == other_model.model_id


@pytest.mark.slow
def test_the_trainer_reports_every_step_prints_nothing_and_leaves_no_files(tmp_path, monkeypatch,
                                                                         capsys):
    """SentenceTransformerTrainer drives the embedder: progress per step with its loss, stdout
    left to `--json`, no checkpoint or run directory anywhere but the output."""
    from search.finetune.embedder import EmbedderTraining, train_embedder

    texts = {d: x for d, _, x in TOPICS}
    ids = list(texts)
    exs = [Example(f"q-{d}", QUESTIONS[d], {d}, [Passage(d, texts[d])],
                   [Passage(ids[i - 1], texts[ids[i - 1]])]) for i, d in enumerate(ids)]
    exs.append(Example("q-pay", "salary day", {"payroll"}, [Passage("payroll", texts["payroll"])]))
    monkeypatch.chdir(tmp_path)
    seen = []
    stats = train_embedder(exs, tmp_path / "out", base_model=BASE,
                           config=EmbedderTraining(batch_size=4, max_length=32, max_steps=2),
                           progress=lambda *a: seen.append(a))
    assert [(s, n) for s, n, _ in seen] == [(1, 2), (2, 2)]
    assert all(np.isfinite(loss) for _, _, loss in seen)
    assert stats == {"rows": 9, "steps": 2, "final_loss": seen[-1][2]}
    assert capsys.readouterr().out == ""
    assert os.listdir(tmp_path) == ["out"]
    assert (tmp_path / "out" / "modules.json").is_file()

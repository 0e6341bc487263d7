"""`lorebot eval` for a newcomer (issue 15, item 7): every argument checked before the corpus is
indexed, the indexing announced with a rough duration, progress lines when stderr is a log, the
published anchors only beside a full split, and a promoted reranker used by `--mode rerank`.

Stand-in models (hashed vectors, a reranker that keeps the order): seconds, not minutes.
"""

from __future__ import annotations

import shutil
import time

import pytest

from bot.cli.main import main
from tests.bot.test_cli_newcomer import fake_models  # noqa: F401 - a fixture


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def scifact(tiny_beir, tmp_path):
    """The tiny dataset under the name and split the published SciFact figures are for."""
    root = tmp_path / "scifact"
    shutil.copytree(tiny_beir, root)
    shutil.copy(root / "qrels" / "train.tsv", root / "qrels" / "test.tsv")
    return root


def _corpus_indexed(data_dir, name: str) -> bool:
    import sqlite3

    path = data_dir / "eval" / f"{name}.sqlite3"
    if not path.exists():
        return False
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return "documents" in tables and conn.execute("SELECT count(*) FROM documents").fetchone()[0] > 0


@pytest.mark.parametrize("argv, message", [
    (("--mode", "bm25,rerank"), "mode rerank needs a reranker"),
    (("--mode", "bm25,hybird"), "unknown mode hybird"),
    (("--json", "no/such/folder/out.json"), "does not exist"),
])
def test_a_bad_argument_fails_before_the_corpus_is_indexed(
        capsys, data_dir, tiny_beir, fake_models, argv, message):  # noqa: F811
    started = time.perf_counter()
    code, _out, err = run(capsys, "eval", "--dataset", str(tiny_beir), "--split", "train", *argv)
    assert code == 2 and message in err, err
    assert time.perf_counter() - started < 5
    assert "indexed first" not in err and not _corpus_indexed(data_dir, "tiny")


def test_the_indexing_is_announced_and_progress_is_printed_to_a_log(
        capsys, data_dir, tiny_beir, fake_models, monkeypatch):  # noqa: F811
    import bot.console

    monkeypatch.setattr(bot.console, "PROGRESS_EVERY_S", 0.0)
    code, _out, err = run(capsys, "eval", "--dataset", str(tiny_beir), "--split", "train",
                         "--mode", "bm25,dense")
    assert code == 0, err
    lines = err.splitlines()
    announce = next(i for i, x in enumerate(lines) if "is indexed first" in x)
    assert "8 documents" in lines[announce] and "8 queries × 2 modes" in lines[announce]
    estimate = next(x for x in lines if "chunks at" in x)
    assert "about" in estimate and "8 documents to embed" in estimate
    assert any(x.startswith("indexing corpus: ") and "chunks embedded" in x for x in lines)
    assert any(x.startswith("evaluating: ") and "/16 searches" in x for x in lines)
    assert announce < next(i for i, x in enumerate(lines) if x.startswith("corpus: "))
    # A second run: nothing new to embed, and it says so instead of an estimate.
    code, _out, err = run(capsys, "eval", "--dataset", str(tiny_beir), "--split", "train",
                         "--mode", "bm25")
    assert code == 0 and "indexed already" in err and "chunks at" not in err


def test_published_anchors_only_beside_the_full_split(capsys, data_dir, scifact, fake_models):  # noqa: F811
    code, out, err = run(capsys, "eval", "--dataset", str(scifact), "--mode", "bm25")
    assert code == 0 and "anchor" in out and "0.665" in out
    code, out, err = run(capsys, "eval", "--dataset", str(scifact), "--mode", "bm25",
                         "--max-queries", "3")
    assert code == 0 and "anchor" not in out and "0.665" not in out
    assert "only for the full test split" in err


class KeepOrderReranker:
    """A reranker that keeps the fused order; records that it was asked."""

    calls = 0

    def warm_up(self) -> None:
        pass

    async def rerank(self, query, hits):
        KeepOrderReranker.calls += 1
        return list(hits)


def test_rerank_uses_the_promoted_reranker(capsys, data_dir, tiny_beir, fake_models, monkeypatch):  # noqa: F811
    from bot.runtime import services
    from bot.runtime.factories import model_registry
    from bot.settings import Settings
    from search.finetune.registry import Candidate

    registry = model_registry(Settings())
    cand = registry.register(Candidate(id=registry.new_id("reranker"), kind="reranker",
                                       base_model="all-MiniLM-L6-v2", data_digest="x"))
    registry.path(cand.id).mkdir(parents=True)
    registry.promote(cand.id)
    chosen = []
    monkeypatch.setattr(services, "new_reranker",
                        lambda settings, model: chosen.append(model) or KeepOrderReranker())
    code, out, err = run(capsys, "eval", "--dataset", str(tiny_beir), "--split", "train",
                         "--mode", "rerank")
    assert code == 0, err
    assert chosen == [str(registry.path(cand.id))] and KeepOrderReranker.calls >= 8
    assert "rerank" in out


def test_a_question_whose_answer_matches_no_indexed_document_is_warned_about(
        capsys, data_dir, kb, fake_models, tmp_path):  # noqa: F811
    import json

    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"id": "files", "question": "How do I choose which files get indexed?",
         "answers": ["kb/indexing.md"]},
        {"id": "typo", "question": "What is the hotel budget?",
         "answers": ["kb/travel-polcy.pdf"]},
    ]) + "\n")
    code, _out, err = run(capsys, "eval", "--questions", str(questions), "--mode", "bm25")
    assert code == 2 and "knowledge base is empty" in err  # nothing indexed yet: said at once
    code, _out, err = run(capsys, "index", str(kb), "--source", "kb")
    code, _out, err = run(capsys, "eval", "--questions", str(questions), "--mode", "bm25")
    assert code == 0, err
    warnings = [x for x in err.splitlines() if "warning" in x]
    assert len(warnings) == 1 and "travel-polcy.pdf" in warnings[0] and "typo" in warnings[0]
    assert "matches no indexed document" in warnings[0]


def test_max_queries_must_be_positive_at_parse_time(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--dataset", "x", "--max-queries", "0"])
    err = capsys.readouterr().err
    assert err.startswith("usage: lorebot eval") and "must be 1 or more" in err

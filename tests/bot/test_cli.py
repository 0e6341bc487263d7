"""End to end through the CLI entry point, with the real MiniLM model and a real index file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bot.cli.main import main
from tests.support.broken_files import write_garbage_pdf, write_truncated

pytestmark = pytest.mark.slow


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str):
    code, out, err = run(capsys, *argv, "--json")
    return code, json.loads(out)


def test_help_imports_no_model_or_training_code():
    """`lorebot --help` stays instant because it imports nothing heavy (checked by what it
    imports, not by a timing, which a busy machine would make flaky)."""
    heavy = ("torch", "sentence_transformers", "transformers", "datasets", "accelerate",
             "openai", "slack_bolt", "lark_oapi", "numpy", "onnxruntime", "onnx")
    probe = ("import sys; from bot.cli.main import build_parser; build_parser().format_help();"
             f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
    subprocess.run([sys.executable, "-m", "bot.cli", "--help"], capture_output=True, check=True)


def test_index_search_ask_and_reindex(capsys, data_dir, kb):
    write_garbage_pdf(kb / "broken.pdf")
    good_docx = (kb / "onboarding.docx").read_bytes()
    write_truncated(kb / "truncated.docx", good_docx)

    code, summary = run_json(capsys, "index", str(kb), "--source", "handbook")
    assert code == 1  # some files failed
    failed = {f["path"].rsplit("/", 1)[-1]: f["reason"] for f in summary["failed"]}
    assert set(failed) == {"broken.pdf", "truncated.docx"}
    assert all(reason for reason in failed.values())
    # Every doc of the sample knowledge base, plus the good DOCX and PDF the fixture adds.
    docs = sum(1 for f in kb.rglob("*.md"))
    assert summary["added"] == docs + 2 and summary["chunks"] >= docs + 2
    assert set(summary) == {"added", "updated", "unchanged", "removed", "failed", "chunks", "seconds"}

    # A Chinese question finds the Chinese passage with keyword search alone.
    code, found = run_json(capsys, "search", "如何修改数据目录的位置", "--mode", "bm25", "-k", "3")
    hits = found["hits"]
    assert code == 0 and hits[0]["title"] == "快速入门" and found["fusion"] is None
    assert "LOREBOT_DATA_DIR" in hits[0]["text"]
    assert set(hits[0]) == {"doc_id", "title", "path", "url", "score", "text"}

    # The DOCX and the PDF were parsed and are found by meaning.
    for mode in ("dense", "hybrid"):
        code, found = run_json(capsys, "search", "how much can I spend on a hotel room", "--mode", mode)
        hits = found["hits"]
        assert hits[0]["path"].endswith("travel-policy.pdf"), mode
    code, found = run_json(capsys, "search", "security key for new hires", "-k", "1")
    hits = found["hits"]
    assert hits[0]["path"].endswith("onboarding.docx")

    code, answer = run_json(capsys, "ask", "How do I choose which files get indexed?")
    assert code == 0 and answer["mode"] == "extractive"
    numbers = [c["n"] for c in answer["citations"]]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    assert "[1]" in answer["answer"]
    assert any(c["path"].endswith("indexing.md") for c in answer["citations"])

    # Unchanged corpus: nothing re-embedded, nothing removed; a deleted file is removed.
    code, again = run_json(capsys, "index", str(kb), "--source", "handbook")
    assert (again["added"], again["updated"], again["removed"], again["chunks"]) == (0, 0, 0, 0)
    assert again["unchanged"] == docs + 2
    (kb / "faq.md").unlink()
    (kb / "searching.md").write_text((kb / "searching.md").read_text() + "\nOne more line.\n")
    code, changed = run_json(capsys, "index", str(kb), "--source", "handbook")
    assert (changed["removed"], changed["updated"], changed["unchanged"]) == (1, 1, docs)  # of docs + 2

    code, sources = run_json(capsys, "sources")
    assert sources[0]["source"] == "handbook" and sources[0]["documents"] == docs + 2 - 1


def test_clear_errors_for_missing_path_and_empty_index(capsys, data_dir, tmp_path):
    code, out, err = run(capsys, "index", str(tmp_path / "nope"))
    assert code == 2 and "nope" in err and "Traceback" not in err
    code, out, err = run(capsys, "search", "anything", "--mode", "rerank")
    assert code == 2 and "LOREBOT_SEARCH__RERANKER_MODEL" in err
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "index", str(tmp_path / "empty"))
    assert code == 2 and "no files" in err


def test_demo_answers_the_sample_question_without_credentials(data_dir):
    """The README's run command: with stdin not a terminal it answers one question and exits."""
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"], capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "[1]" in out.stdout and "Sources:" in out.stdout
    assert "indexing.md" in out.stdout

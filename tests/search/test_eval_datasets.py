"""BEIR loading, BEIR corpus to Documents, and team question files with location matching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.errors import SearchError, SourceError
from search.evaluation.datasets import (
    DatasetError,
    LocationMatcher,
    beir_documents,
    load_beir,
    load_questions,
)
from search.models import Hit
from search.text import content_hash

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "scifact"


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    _jsonl(root / "corpus.jsonl", [
        {"_id": "d1", "title": "Alpha", "text": "alpha text", "metadata": {}},
        {"_id": "d2", "title": "", "text": "beta text"},
        {"_id": 3, "text": "no title, numeric id"},
    ])
    _jsonl(root / "queries.jsonl", [
        {"_id": "q1", "text": "what is alpha?"},
        {"_id": "q2", "text": "what is beta?"},
        {"_id": "q3", "text": "only in train"},
    ])
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq2\td2\t1\nq1\td1\t2\nq1\t3\t0\n", encoding="utf-8"
    )
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td1\t1\n")
    return root


# --- BEIR ---------------------------------------------------------------------------------------


def test_load_beir_keeps_only_queries_judged_in_split(beir_dir):
    data = load_beir(beir_dir, "test")
    assert (data.name, data.split) == ("tiny", "test")
    assert data.queries == {"q2": "what is beta?", "q1": "what is alpha?"}  # qrels order
    assert data.qrels == {"q2": {"d2": 1}, "q1": {"d1": 2, "3": 0}}
    corpus = list(data.corpus)
    assert corpus == [("d1", "Alpha", "alpha text"), ("d2", "", "beta text"),
                      ("3", "", "no title, numeric id")]
    assert list(data.corpus) == corpus  # re-iterable
    assert load_beir(beir_dir, "train").queries == {"q3": "only in train"}


def test_beir_documents(beir_dir):
    docs = list(beir_documents(load_beir(beir_dir).corpus, "scifact"))
    assert [d.doc_id for d in docs] == ["d1", "d2", "3"]
    first = docs[0]
    assert (first.source, first.title, first.text) == ("scifact", "Alpha", "alpha text")
    assert first.content_hash == content_hash("Alpha", "alpha text")
    assert first.path is None and first.url is None
    # A whole dataset is accepted too (its corpus is used).
    assert list(beir_documents(load_beir(beir_dir), source="scifact")) == docs


def test_missing_directory_and_files(beir_dir, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"qrels/dev\.tsv.*available.*test, train"):
        load_beir(beir_dir, "dev")
    (beir_dir / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl' is missing"):
        load_beir(beir_dir)


def test_dataset_errors_are_search_errors():
    assert issubclass(DatasetError, SourceError) and issubclass(DatasetError, SearchError)


@pytest.mark.parametrize(
    "qrels_text, message",
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\n", r"test\.tsv:2: expected 3 tab-separated"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\thigh\n", r"test\.tsv:3: score 'high'"),
        ("query-id\tcorpus-id\tscore\n", "holds no judgements"),
        ("query-id\tcorpus-id\tscore\nq9\td1\t1\n", r"1 queries that are not in .*'q9'"),
    ],
)
def test_bad_qrels(beir_dir, qrels_text, message):
    (beir_dir / "qrels" / "test.tsv").write_text(qrels_text)
    with pytest.raises(DatasetError, match=message):
        load_beir(beir_dir)


def test_qrels_without_header_are_read(beir_dir):
    (beir_dir / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    assert load_beir(beir_dir).qrels == {"q1": {"d1": 1}}


def test_bad_queries_line(beir_dir):
    (beir_dir / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n\n{"_id": "q2", "text": 5}\n')
    with pytest.raises(DatasetError, match=r"queries\.jsonl:3: \"text\" must be a string"):
        load_beir(beir_dir)
    (beir_dir / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{broken\n')
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: not valid JSON"):
        load_beir(beir_dir)


def test_bad_corpus_line_raises_on_iteration(beir_dir):
    (beir_dir / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n{"title": "no id"}\n')
    corpus = load_beir(beir_dir).corpus  # the corpus is streamed, so this still loads
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2: missing or empty \"_id\""):
        list(corpus)
    (beir_dir / "corpus.jsonl").write_text('["a list"]\n')
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:1: expected a JSON object"):
        list(load_beir(beir_dir).corpus)


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="SciFact not present")
def test_scifact_counts():
    data = load_beir(SCIFACT, "test")
    assert len(data.queries) == 300
    assert sum(len(j) for j in data.qrels.values()) == 339
    assert sum(1 for _ in data.corpus) == 5183


# --- team question files ------------------------------------------------------------------------


def _hit(path: str | None = None, url: str | None = None, doc_id: str = "x") -> Hit:
    return Hit(chunk_id=f"{doc_id}#0", doc_id=doc_id, source="kb", title="", text="", score=1.0,
               path=path, url=url)


def test_load_questions(tmp_path):
    f = tmp_path / "q.jsonl"
    _jsonl(f, [
        {"question": " How do I set up? ", "answers": ["docs/setup.md", "https://wiki/x/"]},
        {"id": "vpn", "question": "VPN?", "answers": ["/srv/kb/vpn.md"]},
    ])
    questions = load_questions(f)
    assert questions.queries == {"line-1": "How do I set up?", "vpn": "VPN?"}
    assert questions.qrels == {
        "line-1": {"docs/setup.md": 1, "https://wiki/x": 1},
        "vpn": {"/srv/kb/vpn.md": 1},
    }


def test_question_keys_match_hits(tmp_path):
    f = tmp_path / "q.jsonl"
    _jsonl(f, [{"question": "q", "answers": ["./docs//setup.md", "https://wiki/x/", "/srv/a.md"]}])
    questions = load_questions(f)
    key = questions.key
    # URLs: exact, trailing slash ignored
    assert key(_hit(url="https://wiki/x")) == "https://wiki/x"
    assert key(_hit(url="https://wiki/x/")) == "https://wiki/x"
    assert key(_hit(url="https://wiki/x/y")) == "https://wiki/x/y"  # no prefix match
    # relative entries match by whole trailing path components
    assert key(_hit(path="/home/me/kb/docs/setup.md")) == "docs/setup.md"
    assert key(_hit(path="/home/me/kb/mydocs/setup.md")) == "/home/me/kb/mydocs/setup.md"
    # absolute entries match exactly, after normalisation
    assert key(_hit(path="/srv/./a.md")) == "/srv/a.md"
    assert key(_hit(path="/other/srv/a.md")) == "/other/srv/a.md"
    # a hit with both: the URL is tried first, then the path
    assert key(_hit(path="/kb/docs/setup.md", url="https://elsewhere")) == "docs/setup.md"
    # no location at all: the document id
    assert key(_hit(doc_id="d9")) == "d9"


def test_most_specific_entry_wins():
    matcher = LocationMatcher(["setup.md", "docs/setup.md"])
    assert matcher.key(_hit(path="/kb/docs/setup.md")) == "docs/setup.md"
    assert matcher.key(_hit(path="/kb/setup.md")) == "setup.md"


def test_base_dir_resolves_relative_entries(tmp_path):
    f = tmp_path / "q.jsonl"
    _jsonl(f, [{"question": "q", "answers": ["docs/setup.md"]}])
    questions = load_questions(f, base_dir="/srv/kb")
    assert questions.qrels == {"line-1": {"/srv/kb/docs/setup.md": 1}}
    assert questions.key(_hit(path="/srv/kb/docs/setup.md")) == "/srv/kb/docs/setup.md"
    # With a base dir there is no suffix matching: another tree's docs/setup.md is not the answer.
    assert questions.key(_hit(path="/old/docs/setup.md")) == "/old/docs/setup.md"


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"q\.jsonl:2: not valid JSON"),
        ('{"answers": ["a.md"]}', r"q\.jsonl:2: \"question\" must be a non-empty string"),
        ('{"question": "q", "answers": []}', r"q\.jsonl:2: \"answers\" must be a non-empty list"),
        ('{"question": "q", "answers": "a.md"}', r"q\.jsonl:2: \"answers\" must be"),
        ('{"question": "q", "answers": ["a.md", 3]}', r"q\.jsonl:2: \"answers\" must be"),
        ('{"id": "one", "question": "q", "answers": ["a.md"]}',
         r"q\.jsonl:2: id 'one' already used on line 1"),
        ('{"id": [], "question": "q", "answers": ["a.md"]}', r"q\.jsonl:2: \"id\" must be"),
    ],
)
def test_bad_question_lines(tmp_path, line, message):
    f = tmp_path / "q.jsonl"
    f.write_text('{"id": "one", "question": "q", "answers": ["a.md"]}\n' + line + "\n")
    with pytest.raises(DatasetError, match=message):
        load_questions(f)


def test_missing_or_empty_question_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_questions(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="holds no questions"):
        load_questions(tmp_path / "empty.jsonl")


@pytest.mark.parametrize("content, message", [
    ('{"question": "a", "answers": ["x.md"]}\n'.encode("utf-16"), None),  # read, not refused
    (b'{"question": "a\xff", "answers": ["x.md"]}\n', "line 1|:1: not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", ":1: JSON nested too deeply"),
])
def test_a_question_file_in_utf16_with_a_bad_byte_or_nested_deep_is_read_or_one_clear_error(
        tmp_path, content, message):
    from search.evaluation import load_questions
    from search.evaluation.datasets import DatasetError

    path = tmp_path / "questions.jsonl"
    path.write_bytes(content)
    if message is None:
        assert list(load_questions(path).queries.values()) == ["a"]
    else:
        with pytest.raises(DatasetError, match=message):
            load_questions(path)

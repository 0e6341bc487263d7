"""Small ways bad input used to crash or mislead: an undecodable file name, invalid UTF-8 in a
query, a placeholder PDF title."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search.loaders import discover, iter_documents, load_file
from search.models import Document, LoadFailure
from tests.support import broken_files as bf

MB = 1024 * 1024


def test_an_undecodable_file_name_is_one_clear_failure(tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path)
    with open(folder + b"/caf\xe9-menu.md", "wb") as f:  # Latin-1 bytes in the name
        f.write(b"# Menu\n\nSoup of the day.\n")
    (tmp_path / "good.md").write_text("# Good\n\nFine.\n")
    items = list(iter_documents(discover([tmp_path]), source="kb", max_bytes=MB))
    failures = [i for i in items if isinstance(i, LoadFailure)]
    assert [type(i) for i in items].count(Document) == 1 and len(failures) == 1
    assert failures[0].reason.startswith("the file name is not valid UTF-8")
    assert "rename it" in failures[0].reason
    assert failures[0].path.endswith("caf\ufffd-menu.md")
    failures[0].path.encode("utf-8")  # printable and storable


@pytest.mark.parametrize("title", [None, "untitled", "Untitled document", "Microsoft Word - Document1"])
def test_a_pdf_without_a_real_title_is_named_after_its_file(tmp_path: Path, title) -> None:
    path = bf.write_pdf(tmp_path / "quarterly-report.pdf", ["Revenue grew by four percent."],
                        title=title)
    assert load_file(path, root=tmp_path, source="kb", max_bytes=MB).title == "Quarterly report"


def test_a_pdf_title_is_kept(tmp_path: Path) -> None:
    path = bf.write_pdf(tmp_path / "q.pdf", ["Revenue grew."], title="Quarterly results 2026")
    assert load_file(path, root=tmp_path, source="kb", max_bytes=MB).title == "Quarterly results 2026"


async def test_invalid_utf8_in_a_query_is_replaced_not_raised(tmp_path: Path) -> None:
    from search.embedding import SentenceTransformerEmbedder
    from search.index.sqlite import SqliteIndex
    from search.indexer import Indexer
    from search.retriever import Retriever

    (tmp_path / "vpn.md").write_text("# VPN\n\nInstall the Zorbulator VPN client.\n")
    index = SqliteIndex(tmp_path / "index.sqlite3")
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=8)
    try:
        await Indexer(index, embedder).index_documents(
            "kb", iter_documents(discover([tmp_path / "vpn.md"]), source="kb", max_bytes=MB))
        retriever = Retriever(index, embedder)
        query = os.fsdecode(b"vpn \xff")  # what argv holds for $'vpn \xff'
        for mode in ("bm25", "dense", "hybrid"):
            hits = await retriever.search(query, mode=mode, k=3)
            assert hits and hits[0].title == "VPN", mode
        assert await retriever.search("vpn \ud800", mode="hybrid", k=1)
    finally:
        await index.close()

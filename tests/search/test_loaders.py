"""Loaders against real files: good ones, and every kind of broken one a team folder holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search.errors import LoadError, SourceError
from search.loaders import (
    CONVERTED_EXTENSIONS,
    discover,
    iter_documents,
    load_file,
    make_doc_id,
    prettify_stem,
)
from search.models import Document, LoadFailure
from search.text import content_hash
from tests.support import broken_files as bf

MB = 1024 * 1024


def load(path: Path, *, source: str = "kb", max_bytes: int = 20 * MB) -> Document:
    return load_file(path, root=path.parent, source=source, max_bytes=max_bytes)


def reason(path: Path, **kwargs) -> str:
    with pytest.raises(LoadError) as info:
        load(path, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- text formats


def test_markdown_document_fields(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("# The *Guide*\n\nHello.\n\n## Install\n\npip install it\n", encoding="utf-8")
    doc = load(path, source="handbook")
    assert doc.title == "The Guide"
    assert doc.text == "# The *Guide*\n\nHello.\n\n## Install\n\npip install it"
    assert doc.source == "handbook"
    assert doc.path == str(path.resolve())
    assert doc.url is None
    assert doc.modified == pytest.approx(path.stat().st_mtime)
    assert doc.content_hash == content_hash(doc.title, doc.text)
    assert doc.doc_id == make_doc_id("handbook", "guide.md")
    assert len(doc.doc_id) == 20 and int(doc.doc_id, 16) >= 0


def test_doc_id_is_stable_and_depends_on_source_and_relative_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "notes.md"
    path.write_text("first version\n", encoding="utf-8")
    first = load_file(path, root=tmp_path, source="kb", max_bytes=MB)
    path.write_text("second version\n", encoding="utf-8")
    second = load_file(path, root=tmp_path, source="kb", max_bytes=MB)
    assert first.doc_id == second.doc_id == make_doc_id("kb", "a/notes.md")
    assert first.content_hash != second.content_hash
    assert load_file(path, root=tmp_path, source="other", max_bytes=MB).doc_id != first.doc_id
    assert load_file(path, root=path.parent, source="kb", max_bytes=MB).doc_id != first.doc_id


def test_title_falls_back_to_front_matter_then_prettified_stem(tmp_path: Path) -> None:
    fm = tmp_path / "fm.md"
    fm.write_text("---\ntitle: 'Release process'\ntags: [x]\n---\n\nSteps here.\n")
    doc = load(fm)
    assert doc.title == "Release process"
    assert doc.text == "Steps here."  # front matter is metadata, not content
    plain = tmp_path / "on-call_rotation.txt"
    plain.write_text("Who is on call.\n")
    assert load(plain).title == "On call rotation"
    assert prettify_stem("README") == "README"


def test_hash_in_code_fence_is_not_the_title(tmp_path: Path) -> None:
    path = tmp_path / "setup-notes.md"
    path.write_text("```sh\n# not a title\n```\n\n# Real title\n")
    assert load(path).title == "Real title"


def test_utf8_bom_and_crlf_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbf# T\xc3\xadtulo\r\n\r\nCuerpo.\r\n")
    doc = load(path)
    assert doc.title == "Título"
    assert doc.text == "# Título\n\nCuerpo."


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    path = bf.write_utf16_bom(tmp_path / "wide.txt", "Grüße aus 東京\n")
    assert load(path).text == "Grüße aus 東京"


def test_yaml_comments_do_not_become_headings(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# retries for the API client\nretries: 3\n")
    doc = load(path)
    assert doc.text == "```yaml\n# retries for the API client\nretries: 3\n```"
    assert doc.title == "Config"


def test_rst_headings_become_markdown_headings(tmp_path: Path) -> None:
    path = tmp_path / "manual.rst"
    path.write_text("======\nManual\n======\n\nIntro.\n\nSetup\n-----\n\nDo this.\n\nMore\n----\n")
    doc = load(path)
    assert doc.title == "Manual"
    assert doc.text == "# Manual\n\nIntro.\n\n## Setup\n\nDo this.\n\n## More"


def test_csv_becomes_a_table(tmp_path: Path) -> None:
    path = tmp_path / "owners.csv"
    path.write_text("service,owner\nbilling,ana\n")
    assert "| billing | ana |" in load(path).text


# --------------------------------------------------------------------------- HTML, DOCX, PDF


def test_html_title_from_h1_else_title_tag(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Deploy - Wiki</title><script>var x = 1;</script></head>"
        "<body><h1>Deploy</h1><p>Run <b>make deploy</b>.</p><h2>Rollback</h2><p>Undo.</p>"
        "</body></html>"
    )
    doc = load(page)
    assert doc.title == "Deploy"
    assert "Run **make deploy**." in doc.text and "## Rollback" in doc.text
    assert "var x" not in doc.text
    no_h1 = tmp_path / "no_h1.htm"
    no_h1.write_text("<html><head><title>Deploy - Wiki</title></head><body><p>Hi</p></body>")
    assert load(no_h1).title == "Deploy - Wiki"


def test_real_docx(tmp_path: Path) -> None:
    path = bf.write_docx(
        tmp_path / "handbook.docx",
        [("Vacation policy", ["Ask your lead two weeks ahead.", "Log it in the HR tool."])],
    )
    doc = load(path)
    assert doc.title == "Vacation policy"
    assert "# Vacation policy" in doc.text
    assert "Ask your lead two weeks ahead." in doc.text


def test_docx_metadata_title_when_there_is_no_heading(tmp_path: Path) -> None:
    path = bf.write_docx(tmp_path / "x.docx", [("", ["Just a paragraph."])], core_title="Memo")
    assert load(path).title == "Memo"


def test_real_xlsx_and_pptx(tmp_path: Path) -> None:
    sheet = bf.write_xlsx(
        tmp_path / "owners.xlsx",
        [["service", "owner"], ["billing", "ana"]],
        sheet="Owners",
        core_title="Service owners",
    )
    doc = load(sheet)
    assert doc.title == "Service owners"
    assert "| billing | ana |" in doc.text
    slides = [("Roadmap", "Ship search in Q3"), ("Risks", "Hiring")]
    deck = bf.write_pptx(tmp_path / "deck.pptx", slides)
    doc = load(deck)
    assert doc.title == "Roadmap"
    assert doc.text == "# Roadmap\nShip search in Q3\n\n# Risks\nHiring"


def test_real_pdf_text_and_metadata_title(tmp_path: Path) -> None:
    path = bf.write_pdf(
        tmp_path / "q3.pdf", ["Quarterly report", "Revenue grew (a lot) in Q3."], title="Q3 Report"
    )
    doc = load(path)
    assert doc.title == "Q3 Report"
    assert "Quarterly report" in doc.text
    assert "Revenue grew (a lot) in Q3." in doc.text
    untitled = bf.write_pdf(tmp_path / "board_minutes.pdf", ["Minutes"])
    assert load(untitled).title == "Board minutes"


def test_pdf_without_text_needs_ocr(tmp_path: Path) -> None:
    path = bf.write_pdf(tmp_path / "scan.pdf", [])
    assert reason(path) == "no text found; scanned PDFs need OCR first"


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_truncated_pdf(tmp_path: Path, keep: float) -> None:
    good = bf.pdf_bytes(["Some text that will be cut off"], title="Cut")
    path = bf.write_truncated(tmp_path / "cut.pdf", good, keep)
    with pytest.raises(LoadError) as info:
        load(path)
    assert "PDF" in str(info.value) and "corrupt" in str(info.value)
    assert info.value.__cause__ is not None


def test_garbage_pdf(tmp_path: Path) -> None:
    assert "could not read this PDF file" in reason(bf.write_garbage_pdf(tmp_path / "x.pdf"))


def test_truncated_docx(tmp_path: Path) -> None:
    good = bf.write_docx(tmp_path / "good.docx", [("Title", ["Body text."])]).read_bytes()
    path = bf.write_truncated(tmp_path / "cut.docx", good, 0.6)
    with pytest.raises(LoadError) as info:
        load(path)
    assert "could not read this DOCX file" in str(info.value)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("ext", sorted(CONVERTED_EXTENSIONS))
def test_no_third_party_exception_escapes(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"junk{ext}"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(LoadError):
        load(path)


def test_legacy_html_with_declared_charset(tmp_path: Path) -> None:
    page = "<html><head><meta charset='windows-1252'></head><body><h1>Café</h1></body></html>"
    (tmp_path / "old.html").write_bytes(page.encode("cp1252"))
    assert load(tmp_path / "old.html").title == "Café"
    (tmp_path / "undeclared.html").write_bytes(page.replace("windows-1252", "x").encode("cp1252"))
    assert "re-save the file as UTF-8" in reason(tmp_path / "undeclared.html")


# --------------------------------------------------------------------------- bad input


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_bytes(b"")
    assert reason(tmp_path / "empty.md") == "empty file"
    (tmp_path / "blank.txt").write_text("  \n\n\t\n")
    assert reason(tmp_path / "blank.txt") == "empty file"
    (tmp_path / "empty.pdf").write_bytes(b"")
    assert reason(tmp_path / "empty.pdf") == "empty file"
    (tmp_path / "only-front-matter.md").write_text("---\ntitle: Nothing\n---\n")
    assert reason(tmp_path / "only-front-matter.md") == "empty file"


def test_binary_content_in_text_file(tmp_path: Path) -> None:
    assert "binary content (NUL bytes)" in reason(bf.write_binary(tmp_path / "image.md"))


def test_latin1_text_is_refused_with_a_fix(tmp_path: Path) -> None:
    text = reason(bf.write_latin1(tmp_path / "old.txt"))
    assert text == "not valid UTF-8 (bad byte at offset 3); re-save the file as UTF-8"


def test_over_size(tmp_path: Path) -> None:
    path = bf.write_sized(tmp_path / "big.txt", int(1.5 * MB))
    assert reason(path, max_bytes=MB) == (
        "1.5 MB is over the 1 MB limit (LOREBOT_SEARCH__MAX_FILE_MB)"
    )
    assert load(path, max_bytes=2 * MB).text.startswith("lorem ipsum")


def test_unknown_and_legacy_extensions(tmp_path: Path) -> None:
    (tmp_path / "photo.xyz").write_bytes(b"data")
    assert reason(tmp_path / "photo.xyz").startswith("unsupported file type '.xyz'")
    (tmp_path / "Makefile").write_text("all:\n")
    assert reason(tmp_path / "Makefile").startswith("unsupported file type (no extension)")
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    assert reason(tmp_path / "old.doc") == (
        "old binary .doc format is not supported; save it as .docx"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.md"
    path.write_text("# Secret\n")
    path.chmod(0)
    try:
        assert reason(path).startswith("permission denied")
    finally:
        path.chmod(0o644)


def test_pipes_and_broken_links_are_not_documents(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.md")  # reading it would block forever
    assert reason(tmp_path / "pipe.md").startswith("not a regular file")
    (tmp_path / "link.md").symlink_to(tmp_path / "gone.md")
    assert reason(tmp_path / "link.md") == "broken symbolic link; fix or delete it"


def test_iter_documents_streams_documents_and_failures(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\nalpha\n")
    (tmp_path / "b.md").write_bytes(b"")
    (tmp_path / "c.txt").write_text("gamma\n")
    items = list(iter_documents(discover([tmp_path]), source="kb", max_bytes=MB))
    assert [type(i) for i in items] == [Document, LoadFailure, Document]
    assert items[1] == LoadFailure(path=str(tmp_path / "b.md"), reason="empty file")
    assert items[2].title == "C"


# --------------------------------------------------------------------------- discovery


def make_tree(root: Path, files: list[str]) -> None:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {rel}\n")


def rels(pairs: list[tuple[Path, Path]]) -> list[str]:
    return [file.relative_to(root).as_posix() for root, file in pairs]


def test_discover_walks_recursively_sorted_and_skips_hidden_and_caches(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        [
            "b.md", "a.md", "sub/z.txt", "sub/deeper/y.md",
            ".git/config", ".hidden.md", "sub/.cache/x.md",
            "node_modules/pkg/readme.md", "src/__pycache__/m.txt", "~$report.docx",
        ],
    )  # fmt: skip
    pairs = discover([tmp_path])
    assert rels(pairs) == ["a.md", "b.md", "sub/deeper/y.md", "sub/z.txt"]
    assert all(root == tmp_path.resolve() and file.is_absolute() for root, file in pairs)


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        ["guide.md", "notes.tmp", "drafts/idea.md", "docs/a.md", "docs/old/b.md",
         "docs/drafts/c.md", "x/y/scratch.tmp", "report.pdf"],
    )  # fmt: skip
    assert rels(discover([tmp_path], exclude=["drafts/**", "*.tmp"])) == [
        "docs/a.md", "docs/drafts/c.md", "docs/old/b.md", "guide.md", "report.pdf",
    ]  # fmt: skip
    # Without a slash a pattern matches at any depth, like .gitignore.
    assert rels(discover([tmp_path], include=["*.md"], exclude=["drafts"])) == [
        "docs/a.md", "docs/old/b.md", "guide.md",
    ]  # fmt: skip
    # With a slash it is anchored at the root; '*' stays in one folder, '**' crosses them.
    assert rels(discover([tmp_path], include=["docs/*.md"])) == ["docs/a.md"]
    assert rels(discover([tmp_path], include=["docs/**/*.md"])) == [
        "docs/a.md", "docs/drafts/c.md", "docs/old/b.md",
    ]  # fmt: skip
    assert rels(discover([tmp_path], include=["**/*.pdf", "guide.*"])) == [
        "guide.md", "report.pdf",
    ]  # fmt: skip


def test_discover_accepts_files_and_dedupes_overlaps(tmp_path: Path) -> None:
    make_tree(tmp_path, ["docs/a.md", "docs/sub/b.md", "single/.dotfile.md"])
    docs = tmp_path / "docs"
    pairs = discover([docs, docs / "sub", tmp_path / "single" / ".dotfile.md"])
    files = [file for _, file in pairs]
    assert len(files) == len(set(files)) == 3
    assert (tmp_path / "single", tmp_path / "single" / ".dotfile.md") in pairs
    assert (tmp_path / "docs", tmp_path / "docs" / "sub" / "b.md") in pairs


def test_missing_path_is_a_source_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SourceError, match="nope does not exist.*check the path"):
        discover([missing])


def test_empty_folder_or_no_match_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="matched no files; check the path and the include"):
        discover([tmp_path / "empty"])
    make_tree(tmp_path / "full", ["a.txt"])
    with pytest.raises(SourceError, match="matched no files"):
        discover([tmp_path / "full"], include=["*.md"])

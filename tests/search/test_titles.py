"""Titles and heading paths are plain text (issue 21): inline HTML from the source (anchor tags
in Markdown headings), Markdown emphasis, code and links, and entities never reach a title, a
heading path, a citation or the BM25 title field."""

from __future__ import annotations

import json

import pytest

from bot.cli.main import main
from search.chunking import split_sections
from search.loaders import load_file
from search.text import plain_text
from search.web import html_to_document
from tests.bot.test_cli_newcomer import fake_models  # noqa: F401 - a fixture

PAGE = """# Quotas in Amazon RDS<a name="RDS_Limits.Limits"></a>

Each AWS account has quotas for each Region.

## Maximum number of database connections <a name="RDS_Limits.MaxConnections"></a>

The *maximum* number of simultaneous connections depends on the DB instance class.

## Naming constraints in `Amazon RDS` &amp; [Aurora](https://example.com/aurora)

Names must start with a letter; a `snake_case_name` is allowed.
"""


@pytest.mark.parametrize("raw, plain", [
    ('Quotas in Amazon RDS<a name="RDS_Limits.Limits"></a>', "Quotas in Amazon RDS"),
    ('<a id="top"></a>Quotas <span class="x">and</span> limits', "Quotas and limits"),
    ("**Bold**, _em_ and `code` [link text](http://x 'title')", "Bold, em and code link text"),
    ("Fish &amp; chips &lt;b&gt; &#8212; 1&nbsp;GB", "Fish & chips <b> — 1 GB"),
    ("snake_case_name and a < b > c", "snake_case_name and a < b > c"),
    ("![diagram](a.png) Overview\\*", "diagram Overview*"),
    ("Plain   title\twith  spaces ", "Plain title with spaces"),
    ("C# and F#", "C# and F#"),
    ("<!-- generated -->Release notes", "Release notes"),
])
def test_plain_text(raw: str, plain: str) -> None:
    assert plain_text(raw) == plain


def test_markdown_title_and_heading_paths_drop_anchor_tags(tmp_path) -> None:
    path = tmp_path / "rds-quotas.md"
    path.write_text(PAGE)
    doc = load_file(path, root=tmp_path, source="docs", max_bytes=1 << 20)
    assert doc.title == "Quotas in Amazon RDS"
    paths = [s.headings for s in split_sections(doc.text, doc.title)]
    assert paths == [(), ("Maximum number of database connections",),
                     ("Naming constraints in Amazon RDS & Aurora",)]


def test_front_matter_and_html_titles_are_plain(tmp_path) -> None:
    path = tmp_path / "limits.md"
    path.write_text('---\ntitle: "Service <b>limits</b> &amp; quotas"\n---\nNo heading here.\n')
    assert load_file(path, root=tmp_path, source="docs", max_bytes=1 << 20).title == (
        "Service limits & quotas")
    page = (b"<html><head><title>Quotas &amp; limits &#8212; Amazon RDS</title></head>"
            b"<body><h1>Quotas</h1><p>Text.</p></body></html>")
    doc = html_to_document("web", "https://example.com/q", page, "utf-8")
    assert doc.title == "Quotas & limits — Amazon RDS"


def test_search_hits_and_citations_carry_the_clean_title(capsys, data_dir, tmp_path,
                                                         fake_models) -> None:  # noqa: F811
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "rds-quotas.md").write_text(PAGE)
    assert main(["index", str(kb), "--source", "kb"]) == 0
    capsys.readouterr()
    assert main(["search", "--json", "--mode", "bm25", "simultaneous connections"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["title"] == "Quotas in Amazon RDS"
    assert main(["search", "--mode", "bm25", "simultaneous connections"]) == 0
    shown = capsys.readouterr().out
    assert "Quotas in Amazon RDS > Maximum number of database connections" in shown
    assert "<a" not in shown
    assert main(["ask", "--json", "How many simultaneous connections can I open?"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [c["title"] for c in answer["citations"]] == ["Quotas in Amazon RDS"]

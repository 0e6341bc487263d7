"""Citation markers checked against the sources: mapped, invalid ones dropped, renumbered."""

from __future__ import annotations

import pytest

from bot.answer.citations import CitationRewriter, check_citations, parse_marker_numbers

SOURCES = ["alpha", "beta", "gamma"]


def test_markers_are_mapped_renumbered_by_first_appearance_and_invalid_dropped():
    text = "Deploys run nightly [2]. Rollbacks are manual [3][9]. See [1]."
    cited = check_citations(text, SOURCES)
    assert cited.text == "Deploys run nightly [1]. Rollbacks are manual [2]. See [3]."
    assert cited.cited == ("beta", "gamma", "alpha")
    assert cited.original_numbers == (2, 3, 1)
    assert cited.invalid == (9,)
    assert not cited.cites_nothing


def test_only_cited_sources_are_listed():
    cited = check_citations("Only this [3], again [3].", SOURCES)
    assert cited.text == "Only this [1], again [1]."
    assert cited.cited == ("gamma",)


@pytest.mark.parametrize(
    ("text", "expected", "cited"),
    [
        ("A [1, 3] B [2]", "A [1, 2] B [3]", ("alpha", "gamma", "beta")),
        ("A [3][1]", "A [1][2]", ("gamma", "alpha")),
        ("A [ 2 ,2 , 7 ]", "A [1]", ("beta",)),
        ("A [1-3]", "A [1, 2, 3]", ("alpha", "beta", "gamma")),
        ("A [0] and [4].", "A and.", ()),
        ("[5] Leading marker", "Leading marker", ()),
    ],
)
def test_marker_forms(text, expected, cited):
    result = check_citations(text, SOURCES)
    assert result.text == expected
    assert result.cited == cited


def test_code_and_links_are_not_markers():
    text = "Use `items[2]` or\n```\nx = a[5]\n```\nthen [see](http://x) [1](http://y) [2]."
    result = check_citations(text, SOURCES)
    assert result.text == text.replace("[2].", "[1].")
    assert result.cited == ("beta",)


def test_an_answer_citing_nothing_is_flagged():
    result = check_citations("The knowledge base does not say.", SOURCES)
    assert result.cites_nothing
    assert result.cited == ()
    assert check_citations("Made up [7].", SOURCES).cites_nothing


def test_parse_marker_numbers():
    assert parse_marker_numbers("1, 2") == [1, 2]
    assert parse_marker_numbers("2-4") == [2, 3, 4]
    assert parse_marker_numbers("1-2024") == [1, 2024]  # not a plausible range: not expanded


@pytest.mark.parametrize(
    "text",
    [
        "Deploys run nightly [2]. Rollbacks are manual [3][9]. See [1, 2].",
        "Use `a[1]` and [2](link) then [3]\n```\n[1]\n```\n[1]",
        "Trailing blanks before a bad marker   [8]",
        "Unclosed [1, 2 bracket and [3",
    ],
)
@pytest.mark.parametrize("piece", [1, 2, 5])
def test_streaming_rewrite_matches_whole_text(text, piece):
    rewriter = CitationRewriter(SOURCES)
    shown = "".join(rewriter.feed(text[i : i + piece]) for i in range(0, len(text), piece))
    shown += rewriter.finish()
    whole = check_citations(text, SOURCES)
    assert shown.strip() == whole.text == rewriter.result().text
    assert rewriter.result().cited == whole.cited


def test_streaming_holds_back_only_a_possible_marker():
    rewriter = CitationRewriter(SOURCES)
    assert rewriter.feed("Nightly ") == "Nightly"
    assert rewriter.feed("builds [") == " builds"
    assert rewriter.feed("2") == ""
    assert rewriter.feed("]. Done") == " [1]. Done"

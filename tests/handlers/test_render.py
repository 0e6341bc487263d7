"""Markdown → Slack mrkdwn, and the Block Kit of an answer."""

from __future__ import annotations

from bot.answer.pipeline import Answer, Citation
from handlers.render import answer_blocks, plain_text, split_sections, to_mrkdwn

CITES = (Citation(1, "VPN <setup>", "kb/it/vpn.md", "https://wiki.example.com/vpn?a=1&b=2",
                  "Install WireGuard & import the profile."),
         Citation(2, "Profiles", "/srv/handbook/it/profiles.md", None, "Profiles expire."))


def test_escapes_reserved_characters_outside_markup():
    assert to_mrkdwn("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert to_mrkdwn("<!channel> <@U123>") == "&lt;!channel&gt; &lt;@U123&gt;"


def test_bold_italic_strike_headings_bullets_and_quotes():
    md = "# Title\n**bold** and __also__, *it* and ~~gone~~\n- one\n  * two\n> quoted"
    assert to_mrkdwn(md) == "*Title*\n*bold* and *also*, _it_ and ~gone~\n• one\n  • two\n> quoted"


def test_code_is_kept_verbatim_but_escaped():
    md = "Run `a **b** <c>` then\n```bash\nx && y **z**\n```\ndone"
    assert to_mrkdwn(md) == "Run `a **b** &lt;c&gt;` then\n```\nx &amp;&amp; y **z**\n```\ndone"


def test_links_images_and_citations():
    md = "See [the guide](https://x.test/a?b=1&c=2), ![logo](https://x.test/l.png), " \
         "[local](docs/a.md) and the sources [1][2]."
    out = to_mrkdwn(md, CITES)
    assert "<https://x.test/a?b=1&amp;c=2|the guide>" in out
    assert "<https://x.test/l.png|logo>" in out
    assert " local " in out  # a relative link cannot open from Slack: its label stays
    assert to_mrkdwn("see <https://x.test/a?b=1&c=2>") == "see <https://x.test/a?b=1&amp;c=2>"
    assert "<https://wiki.example.com/vpn?a=1&amp;b=2|[1]>[2]." in out


def test_citation_inside_bold_is_linked():
    assert to_mrkdwn("**Use WireGuard [1]**", CITES) == \
        "*Use WireGuard <https://wiki.example.com/vpn?a=1&amp;b=2|[1]>*"


def test_plain_text_for_notifications():
    assert plain_text("## Hi\n**Install** `wg` via [portal](https://x.test) [1] <now>") == \
        "Hi Install wg via portal [1] &lt;now&gt;"
    assert len(plain_text("word " * 200)) <= 300


def test_split_sections_respects_the_limit_and_paragraphs():
    text = ("para one " * 30).strip() + "\n\n" + ("para two " * 30).strip()
    pieces = split_sections(text, limit=300)
    assert all(len(p) <= 300 for p in pieces)
    assert pieces[0].startswith("para one") and pieces[1].startswith("para two")
    assert split_sections("x" * 700, limit=300) == ["x" * 300, "x" * 300, "x" * 100]


def test_split_sections_never_cuts_a_link_or_a_code_block():
    link = "<https://wiki.example.com/a|a title with several words>"
    code = "```\n" + "line of code\n" * 8 + "```"
    text = " ".join(["word"] * 40) + " " + link + " " + code + " " + " ".join(["end"] * 40)
    for limit in range(120, 400, 7):
        for piece in split_sections(text, limit=limit):
            assert len(piece) <= limit
            assert piece.count("```") % 2 == 0 and piece.count("<") == piece.count(">")
    long_code = "```\n" + "x = 1\n" * 100 + "```"
    pieces = split_sections(long_code, limit=200)
    assert len(pieces) > 2
    assert all(len(p) <= 200 and p.startswith("```") and p.endswith("```") for p in pieces)
    assert "".join(p.strip("`\n") + "\n" for p in pieces).count("x = 1") == 100
    one_long_line = "```\n" + "y" * 500 + "\n```"
    assert all(len(p) <= 200 for p in split_sections(one_long_line, limit=200))


def test_answer_blocks_have_notice_text_sources_and_buttons():
    answer = Answer("Install WireGuard [1]. Profiles expire [2].", CITES, "llm",
                    "Check this answer.", ())
    blocks = answer_blocks(answer, "ans1", max_sources=5)
    kinds = [b["type"] for b in blocks]
    assert kinds == ["context", "section", "divider", "context", "context", "context", "actions"]
    sources = [b["elements"][0]["text"] for b in blocks[4:6]]
    assert sources[0].startswith("*[1]* <https://wiki.example.com/vpn?a=1&amp;b=2|VPN &lt;setup&gt;>")
    assert "Install WireGuard &amp; import" in sources[0]
    assert sources[1].startswith("*[2]* Profiles (_profiles.md_)")  # no URL: title and file name
    assert "/srv/handbook" not in sources[1]  # server paths stay private
    buttons = blocks[-1]["elements"]
    assert [b["value"] for b in buttons] == ["ans1"] * 3


def test_sources_are_capped_and_the_wrong_source_button_is_optional():
    answer = Answer("Text [1] [2]", CITES, "llm", None, ())
    blocks = answer_blocks(answer, "a", max_sources=1, wrong_source_button=False)
    assert sum(1 for b in blocks if b["type"] == "context") == 2  # heading + one source
    assert [e["action_id"] for e in blocks[-1]["elements"]] == [
        "lorebot_feedback_helpful", "lorebot_feedback_not_helpful"]


def test_a_long_answer_stays_within_block_kit_limits():
    answer = Answer("word " * 5000, (), "extractive", None, ())
    blocks = answer_blocks(answer, "a", max_sources=5)
    assert len(blocks) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")


# -- Block Kit validity for any input (issue 14) --------------------------------------------------

import json  # noqa: E402

import pytest  # noqa: E402
from slack_sdk.models.blocks import Block  # noqa: E402
from slack_sdk.models.views import View  # noqa: E402

from handlers import render  # noqa: E402

HOSTILE = ("<!channel> <!here> <!everyone> <@U0BOSS> <#C0SECRET> <https://evil.example|click> "
           "& < > ")
RAW_MENTIONS = ("<!channel>", "<!here>", "<!everyone>", "<@U0BOSS>", "<#C0SECRET>",
                "<https://evil.example|click>")


def assert_valid_message(blocks: list[dict]) -> None:
    """Valid as Slack checks it: slack_sdk's models, plus the limits they do not check."""
    assert 0 < len(blocks) <= render.MESSAGE_BLOCKS
    for raw in blocks:
        Block.parse(raw).validate_json()
        if raw["type"] == "context":
            assert all(0 < len(e["text"]) <= 3000 for e in raw["elements"])
        if raw["type"] == "section":
            assert 0 < len(raw["text"]["text"]) <= 3000


def assert_no_raw_mentions(payload) -> None:
    text = json.dumps(payload, ensure_ascii=False)
    for raw in RAW_MENTIONS:
        assert raw not in text, raw


def test_an_answer_with_huge_titles_urls_and_snippets_is_valid_block_kit():
    long = "x" * 5000
    cites = tuple(Citation(n, f"{HOSTILE}{long}", f"/kb/{long}.md",
                           f"https://wiki.example.com/{long}" if n % 2 else None,
                           f"{HOSTILE}{long}") for n in range(1, 31))
    answer = Answer(f"{HOSTILE}\n\n" + "A sentence [1] and more [2]. " * 600, cites,
                    "llm", HOSTILE + long, ())
    blocks = answer_blocks(answer, "answer-1", max_sources=30)
    assert_valid_message(blocks)
    assert_no_raw_mentions(blocks)
    assert blocks[-1]["type"] == "actions"  # the feedback buttons are never cut
    assert sum(b["type"] == "context" for b in blocks) <= 1 + 1 + render.MAX_SOURCES_SHOWN


def test_a_14000_character_answer_fits_and_says_it_was_cut():
    answer = Answer("word " * 2800 + "\n\n" + ("para " * 400 + "\n\n") * 200, CITES, "llm", None, ())
    blocks = answer_blocks(answer, "a", max_sources=60)
    assert_valid_message(blocks)
    assert render.texts.ANSWER_CUT in json.dumps(blocks, ensure_ascii=False)


@pytest.mark.parametrize("max_sources", [0, 5, 200])
def test_the_block_limit_holds_for_any_number_of_sources(max_sources):
    cites = tuple(Citation(n, f"Doc {n}", None, f"https://k.example/{n}", "s") for n in range(1, 201))
    answer = Answer("[1] " * 20000, cites, "llm", "notice", ())
    assert_valid_message(answer_blocks(answer, "a", max_sources=max_sources))


def test_text_blocks_and_helpers_stay_within_limits():
    assert_valid_message(render.text_blocks(HOSTILE * 2000))
    assert_valid_message(render.text_blocks(""))
    assert_valid_message([render.header("h" * 500), render.context(*["c" * 5000] * 15),
                          render.section("s" * 9000,
                                         render.button("b" * 300, "act", "v" * 2000))])
    with pytest.raises(ValueError):
        render.button("ok", "act", "v" * 2001)  # a cut value would name something else
    blocks = [render.section(str(n)) for n in range(120)] + [render.feedback_block("a")]
    fitted = render.fit_blocks(blocks, keep_last=1)
    assert_valid_message(fitted)
    assert fitted[-1]["type"] == "actions" and "72 more" in fitted[-2]["elements"][0]["text"]


def test_clip_never_cuts_a_link_an_escape_or_leaves_code_open():
    assert render.clip("abc", 10) == "abc"
    linked = "see " + "<https://example.com/" + "a" * 50 + "|doc>"
    assert render.clip(linked, 40) == "see…"
    assert render.clip("a &amp; b", 8) == "a…"
    code = render.clip("```\n" + "line\n" * 100, 60)
    assert len(code) <= 60 and code.endswith("```") and code.count("```") == 2


def test_fit_lines_stays_within_the_message_text_limit():
    lines = [f"• source {n}: " + "x" * 500 for n in range(108)]
    text = render.fit_lines(lines, 10_000)
    assert len(text) <= 10_000 and text.endswith("more not shown")
    assert render.fit_lines(["a", "b"]) == "a\nb"


def test_streamed_chunks_are_escaped_and_split_within_markdown_text_limit():
    chunks = ["<!chan", "nel> hi <@U0", "BOSS> & <!here>"]
    streamed = "".join(render.stream_chunk(c) for c in chunks)
    assert_no_raw_mentions(streamed)
    assert "&lt;!channel&gt;" in streamed and "&amp;" in streamed
    pieces = render.stream_pieces(render.stream_chunk("word & " * 4000))  # 28,000 -> 36,000
    assert all(0 < len(p) <= render.STREAM_TEXT_CHARS for p in pieces)
    assert "".join(pieces) == render.stream_chunk("word & " * 4000)
    assert not any(p.endswith(("&", "&a", "&am", "&amp")) for p in pieces)
    assert render.stream_pieces("x" * 30_000) == ["x" * 12_000, "x" * 12_000, "x" * 6_000]


def test_llm_links_with_overlong_or_piped_urls_stay_links_or_plain_labels():
    long = to_mrkdwn(f"[the doc](https://example.com/{'a' * 5000})")
    assert long == "the doc"
    piped = to_mrkdwn("[doc](https://example.com/a|b)")
    assert piped == "<https://example.com/a%7Cb|doc>"
    assert_no_raw_mentions(to_mrkdwn(HOSTILE))


def test_views_built_with_the_limits_validate():
    view = View(type="home", blocks=[render.section(str(n)) for n in range(render.VIEW_BLOCKS)])
    view.validate_json()


def test_the_question_header_of_a_slash_command_shows_mentions_as_typed():
    header = render.texts.command_question_header("U0ALICE", "<!channel> <@U0BOSS> & VPN?")
    assert header.startswith("<@U0ALICE> asked: ")  # lorebot's own mention of the asker stays
    assert_no_raw_mentions(header.removeprefix("<@U0ALICE>"))
    assert "&lt;!channel&gt; &lt;@U0BOSS&gt; &amp; VPN?" in header


def test_listed_fields_and_job_texts_are_escaped_and_short():
    from bot.jobs.queue import Job
    from bot.jobs.texts import job_text

    listed = render.shown("a\nb <!here> " + "x" * 1000, 50)
    assert len(listed) <= 50 and listed.startswith("a b &lt;!here&gt; x") and listed.endswith("…")
    assert render.shown("<" * 100, 12) == "&lt;…"  # never half an escape
    job = Job(id="j", source="kb", state="done", error=None,
              summary={"failed": [{"path": "<!channel>.md", "reason": "<@U0BOSS> " * 100}]})
    text = job_text(job)
    assert_no_raw_mentions(text)
    failed = Job(id="j", source="kb", state="failed", error="<!here>\n" * 300)
    assert_no_raw_mentions(job_text(failed))
    assert len(job_text(failed)) < 700

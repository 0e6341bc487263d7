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

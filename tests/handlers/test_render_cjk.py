"""Cutting Chinese text for Slack and Feishu (issue 20): between characters, not only at spaces,
and never inside a user-perceived character."""

from __future__ import annotations

import regex

from bot.answer.pipeline import Citation
from feishu.card import SNIPPET_CHARS, sources_markdown
from handlers.render import clip, clip_plain, split_sections, stream_pieces

GRAPHEME = regex.compile(r"\X")
# One space early (inline code), then a long run of Chinese without any.
ZH = "使用 lorebot 命令。" + "文件夹中的所有文件都会被递归读取，没有变化的文档会被跳过。" * 120


def test_sections_of_chinese_text_are_full_not_cut_at_an_early_space():
    pieces = split_sections(ZH, limit=500)
    assert "".join(pieces) == ZH  # nothing lost (no blanks to drop inside the Chinese)
    assert all(len(p) <= 500 for p in pieces)
    assert all(len(p) >= 450 for p in pieces[:-1]), [len(p) for p in pieces]


def test_stream_pieces_of_chinese_text_keep_every_character():
    pieces = stream_pieces(ZH, limit=700)
    assert "".join(pieces) == ZH and all(len(p) <= 700 for p in pieces)


def test_clips_never_split_an_emoji_or_an_accent():
    text = "进度 " + "👩‍💻" * 30
    for limit in range(10, 40):
        for clipped in (clip_plain(text, limit), clip(text, limit)):
            head = clipped.removesuffix("…")
            assert len(clipped) <= limit
            assert GRAPHEME.findall(head) == GRAPHEME.findall(text)[:len(GRAPHEME.findall(head))]


def test_feishu_source_snippets_of_chinese_text_fill_their_room():
    citation = Citation(1, "快速入门", "docs/zh/快速入门.md", None, ZH[:400])
    line = sources_markdown([citation]).splitlines()[-1]
    assert line.endswith("…") and len(line) >= SNIPPET_CHARS * 0.9, line

"""Chinese text in snippets, quotes, keyword evidence and `qa generate` prompts (issue 20)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import regex

from bot.answer.evidence import keyword_coverage
from bot.answer.quotes import cut_text, quote_passage, snippet
from bot.training.qa import DEFAULT_QA_LANGUAGE, QA_PROMPT, passage_language, qa_messages

GRAPHEME = regex.compile(r"\X")
# A Chinese passage with one space early on (inline code), as docs/zh has: the old cut looked
# for the last space in the second half and, finding none, kept limit-1 characters; with a space
# in the second half it dropped everything after it.
ZH = ("使用 lorebot index 命令索引一个文件夹。" + "文件夹中的所有文件都会被递归读取，" * 12
      + "再次运行同一个命令时，没有变化的文档会被跳过。")


def test_a_chinese_snippet_is_cut_between_characters_near_the_limit():
    s = snippet(ZH, 60)
    assert len(s) <= 60 and len(s) >= 55, s
    assert s.endswith("…") and ZH.startswith(s[:-1].rstrip("，"))


def test_a_space_late_in_chinese_text_does_not_swallow_what_follows():
    text = "甲" * 60 + " lorebot " + "乙" * 100
    s = snippet(text, 100)
    assert s.count("乙") >= 25, s  # cut near 100, not at the space after character 60


def test_english_snippets_still_cut_at_a_word_end():
    text = "The travel policy covers hotels, flights and meals for every trip abroad " * 5
    s = snippet(text, 80)
    assert len(s) <= 80 and s.endswith("…") and text.startswith(s[:-1])
    assert text[len(s) - 1] == " "  # the word before the ellipsis is whole


@pytest.mark.parametrize("tail", [
    "👨‍👩‍👧‍👦",       # one grapheme of 7 code points (ZWJ sequence)
    "e\u0301" * 3,     # combining accents
    "🇨🇳",             # a flag: two regional indicators
])
def test_cuts_never_split_a_user_perceived_character(tail):
    text = "x" * 18 + tail + "y" * 30
    for limit in range(18, 18 + len(tail) + 1):
        head = cut_text(text, limit)
        assert len(head) <= limit
        rest = text[len(head):]
        # The cut falls between graphemes: the kept and the left part split none of them.
        assert GRAPHEME.findall(head) + GRAPHEME.findall(rest) == GRAPHEME.findall(text), limit


def test_a_chinese_quote_starts_at_the_sentence_sharing_the_question_words():
    text = ("公司每年组织一次体检。" * 6 + "工牌丢失后应立即在行政系统中挂失，补办需要交二十元工本费。"
            + "食堂位于三楼。" * 20)
    quote = quote_passage(text, ["工牌丢了怎么补办"], limit=60)
    assert quote.startswith("… 工牌丢失后应立即"), quote


def test_keyword_coverage_of_chinese_questions():
    passage = "lorebot 写入的所有数据都保存在数据目录中。可以通过环境变量 LOREBOT_DATA_DIR 修改数据目录的位置。"
    assert keyword_coverage("如何修改数据目录的位置", passage) == 1.0
    assert keyword_coverage("公司年会在哪里举行", passage) == 0.0
    assert 0.3 < keyword_coverage("数据目录能放到网盘里吗", passage) < 0.8
    # Latin words count too, case-insensitively.
    assert keyword_coverage("LOREBOT_DATA_DIR 是什么", passage) == 1.0
    assert keyword_coverage("怎么了？", passage) == 1.0  # no content words: nothing to check


def test_passage_language_is_named_from_its_script():
    assert passage_language("员工每年享有十天带薪年假，需要提前申请。") == "Chinese (中文)"
    assert passage_language("有給休暇はシステムで申請してください。") == "Japanese (日本語)"
    assert passage_language("Employees get ten days of paid leave.") is None


def test_qa_prompt_asks_for_questions_in_the_chinese_passages_language():
    chunk = SimpleNamespace(text="员工每年享有十天带薪年假，需要提前两周在系统中提交申请。",
                            headings=("年假",), title="员工手册", location="kb/手册.md")
    system, user = qa_messages(QA_PROMPT, 3, DEFAULT_QA_LANGUAGE, chunk)
    assert "in Chinese (中文)." in system["content"] and "in Chinese (中文)" in user["content"]
    # A language set explicitly (FINETUNE__QA_LANGUAGE) is kept as it is.
    system, user = qa_messages(QA_PROMPT, 3, "English", chunk)
    assert "in English." in system["content"] and "中文" not in system["content"]
    # An English passage keeps the generic instruction.
    english = SimpleNamespace(text="Ten days of paid leave.", headings=(), title="Handbook",
                              location="kb/h.md")
    system, _ = qa_messages(QA_PROMPT, 3, DEFAULT_QA_LANGUAGE, english)
    assert "in the language of the passage." in system["content"]

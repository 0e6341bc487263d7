"""The pure parts of question generation: reply parsing, filters and training pairs."""

from search.finetune.data import FeedbackPairs
from search.finetune.qa import QAFilter, merge_pairs, parse_reply, qa_pairs

CHUNK = "VPN 访问需要 WireGuard 客户端。配置文件在 90 天后过期，需要在自助门户续期。"


def test_parse_reply_accepts_json_in_prose_fences_and_lists_but_not_prose():
    item = {"question": "q", "answer": "a"}
    assert parse_reply('{"questions": [{"question": "q", "answer": "a"}]}') == [item]
    assert parse_reply('Sure! ```json\n[{"question": "q", "answer": "a"}]\n``` Hope it helps') \
        == [item]
    assert parse_reply('```\n{"question": "q", "answer": "a"}\n```') == [item]
    assert parse_reply("I cannot do that.") is None
    assert parse_reply('{"questions": "none"}') is None
    assert parse_reply("{broken json") is None


def test_filter_handles_cjk_questions():
    judge = QAFilter()
    kept = judge.judge({"question": "VPN 配置文件多久过期？", "answer": "90 天后过期"}, CHUNK)
    assert kept == ("VPN 配置文件多久过期？", "90 天后过期")
    assert judge.judge({"question": "配置文件", "answer": "90 天"}, CHUNK) is None  # a keyword
    assert judge.judge({"question": "VPN配置文件多久过期?", "answer": "90 天后过期"}, CHUNK) is None
    assert judge.judge({"question": "公司的年假有多少天？", "answer": "二十八天年假"}, CHUNK) is None
    assert judge.dropped == {"malformed": 0, "trivial": 1, "duplicate": 1, "unanswerable": 1}


def test_qa_pairs_key_the_document_like_a_cited_source_and_merge_with_feedback():
    pairs = qa_pairs([{"question": "Which VPN client?", "path": "kb/vpn.md", "url": None},
                      {"question": "Which page?", "path": None, "url": "https://x/p"},
                      {"question": "", "path": "kb/a.md"}, {"question": "No key?"}])
    assert sorted(map(sorted, pairs.positives.values())) == [["https://x/p"], ["kb/vpn.md"]]
    feedback = FeedbackPairs({"fb-1": "q"}, {"fb-1": {"kb/a.md"}}, {"fb-1": {"kb/b.md"}})
    merged = merge_pairs(feedback, pairs)
    assert len(merged.queries) == 3 and merged.negatives == {"fb-1": {"kb/b.md"}}

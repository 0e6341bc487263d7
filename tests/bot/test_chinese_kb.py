"""Chinese questions against a mixed Chinese/English knowledge base, end to end through the CLI
with the real all-MiniLM-L6-v2 and a real index of the ``kb`` fixture (lorebot's docs, English and
docs/zh, plus a DOCX and a PDF) — issue 20.

MiniLM is an English model: for a Chinese query its dense list is noise, and equal-weight RRF let
that noise outrank the BM25 match. Per-query fusion weights (search.fusion_weights) and a keyword
evidence check (bot.answer.evidence) are what these tests hold in place.
"""

from __future__ import annotations

import json

from bot.cli.main import main

FEISHU_QUESTION = "飞书机器人需要开通哪些权限"  # answered by docs/zh/飞书.md, 从零开始配置
OFF_TOPIC = ("公司年会在哪里举行", "今天天气怎么样")


def run_json(capsys, *argv: str):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_chinese_questions_against_a_mixed_knowledge_base(data_dir, kb, capsys, monkeypatch):
    run_json(capsys, "index", str(kb))  # once: the checks below share the index

    # A Chinese question ranks the Chinese passage first in hybrid mode...
    found = run_json(capsys, "search", FEISHU_QUESTION, "--mode", "hybrid", "-k", "3")
    top = found["hits"][0]
    assert top["path"].endswith("飞书.md") and "im:message" in top["text"], found["hits"]
    # ...the fusion's choice and its reason are part of the JSON...
    assert found["mode"] == "hybrid"
    assert found["fusion"] == {
        "bm25": 1.0, "dense": 0.0,
        "reason": "query is 100% CJK; embedder all-MiniLM-L6-v2 knows en"}
    # ...and it is answered from that passage, not refused.
    answer = run_json(capsys, "ask", FEISHU_QUESTION)
    assert answer["mode"] == "extractive", answer
    assert answer["citations"][0]["path"].endswith("飞书.md")
    assert "im:message" in answer["answer"]

    # Off-topic Chinese questions are still refused (MiniLM's cosines for Chinese pairs are
    # high whatever they say, so the cosine threshold alone let them through).
    for question in OFF_TOPIC:
        assert run_json(capsys, "ask", question)["mode"] == "no_evidence", question

    # English questions keep the configured weights and the cosine threshold.
    found = run_json(capsys, "search", "how do I add my own documents", "--mode", "hybrid")
    assert found["fusion"] == {"bm25": 1.0, "dense": 1.0, "reason": "configured weights"}
    assert run_json(capsys, "ask", "How do I add my own documents?")["mode"] == "extractive"

    # Equal weights for every query (the behaviour before) are still there when asked for. On
    # this small KB the Feishu passage now wins even so (since issue 21's chunking); what equal
    # weights cost Chinese queries is measured on bench/datasets/zh (README, "Chinese").
    monkeypatch.setenv("LOREBOT_SEARCH__FUSION", "fixed")
    fixed = run_json(capsys, "search", FEISHU_QUESTION, "--mode", "hybrid", "-k", "3")
    assert fixed["fusion"] == {"bm25": 1.0, "dense": 1.0,
                               "reason": "configured weights (SEARCH__FUSION=fixed)"}

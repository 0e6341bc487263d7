"""The per-query fusion weights (search.fusion_weights): pure, so tested directly."""

from __future__ import annotations

import pytest

from search.fusion_weights import (
    covered_scripts,
    embedder_languages,
    fusion_weights,
    script_shares,
)

MINILM = "all-MiniLM-L6-v2"


def weights(query: str, languages=("en",), **kw):
    return fusion_weights(query, embedder=MINILM, languages=languages, **kw)


def test_script_shares_count_letters_only():
    assert script_shares("VPN 怎么配置？") == pytest.approx({"han": 4 / 7, "latin": 3 / 7})
    assert script_shares("2024-01-01 !!") == {}
    assert set(script_shares("Привет мир")) == {"cyrillic"}
    assert set(script_shares("ひらがなとカタカナ")) == {"kana"}


def test_a_chinese_query_with_an_english_embedder_leans_on_bm25():
    w = weights("年假怎么申请？", weak_factor=0.2)
    assert (w.bm25, w.dense, w.dense_is_weak) == (1.0, pytest.approx(0.2), True)
    assert w.reason == "query is 100% CJK; embedder all-MiniLM-L6-v2 knows en"
    assert w.as_dict() == {"bm25": 1.0, "dense": 0.2, "reason": w.reason}


def test_the_factor_scales_the_configured_dense_weight():
    w = weights("报销发票抬头", bm25_weight=0.7, dense_weight=1.5, weak_factor=0.4)
    assert (w.bm25, w.dense) == (0.7, pytest.approx(0.6))


def test_an_english_query_keeps_the_configured_weights():
    w = weights("how do I reset my password", bm25_weight=1.0, dense_weight=0.9)
    assert (w.bm25, w.dense, w.dense_is_weak) == (1.0, 0.9, False)
    assert w.reason == "configured weights"


def test_mixed_queries_are_judged_by_the_share_of_unknown_script():
    # 2 Han letters of 10: mostly English, the embedder can read it.
    assert not weights("how to configure 飞书 bot").dense_is_weak
    # 4 Han letters of 7: mostly Chinese.
    assert weights("VPN 怎么配置").dense_is_weak
    # The threshold is a setting.
    assert not weights("VPN 怎么配置", weak_share=0.6).dense_is_weak


def test_queries_without_letters_keep_the_weights():
    assert not weights("404 500 2024").dense_is_weak


def test_a_multilingual_embedder_is_trusted_in_every_script():
    w = fusion_weights("年假怎么申请", embedder="intfloat/multilingual-e5-small",
                       languages=embedder_languages("intfloat/multilingual-e5-small"))
    assert (w.dense, w.dense_is_weak) == (1.0, False)
    assert "multilingual" in w.reason


def test_an_embedder_that_lists_chinese_is_trusted_for_chinese_only():
    assert not weights("年假怎么申请", languages=("en", "zh")).dense_is_weak
    assert weights("연차 휴가 신청", languages=("en", "zh")).dense_is_weak
    assert not weights("有給休暇の申請", languages=("ja",)).dense_is_weak


def test_unknown_embedders_are_trusted_and_say_so():
    w = fusion_weights("年假怎么申请", embedder="/models/custom", languages=None)
    assert not w.dense_is_weak and "unknown" in w.reason


def test_languages_come_from_the_setting_first_then_the_model_card():
    assert embedder_languages(MINILM) == ("en",)
    assert embedder_languages(MINILM, ["en", "zh"]) == ("en", "zh")
    assert embedder_languages("/data/models/embedder-3") is None
    assert embedder_languages("/data/models/embedder-3", ["en"]) == ("en",)


def test_covered_scripts_of_language_codes():
    assert covered_scripts(["en", "de"]) == {"latin"}
    assert covered_scripts(["zh-CN"]) == {"han"}
    assert covered_scripts(["en", "*"]) is None


def test_the_retriever_reports_the_weights_it_fuses_with():
    from types import SimpleNamespace

    from search.retriever import Retriever

    minilm = SimpleNamespace(model_id=MINILM)
    plain = Retriever(SimpleNamespace(), minilm, weak_factor=0.0)
    assert plain.fusion_for("年假怎么申请").as_dict()["dense"] == 0.0
    # A fine-tuned copy (a directory) with the base model's languages passed in.
    tuned = Retriever(SimpleNamespace(), SimpleNamespace(model_id="/data/models/e1"),
                      languages=("en",))
    assert tuned.fusion_for("年假怎么申请").dense_is_weak
    fixed = Retriever(SimpleNamespace(), minilm, language_aware=False, dense_weight=0.8)
    assert fixed.fusion_for("年假怎么申请").as_dict() == {
        "bm25": 1.0, "dense": 0.8, "reason": "configured weights (SEARCH__FUSION=fixed)"}
    cluster = Retriever(SimpleNamespace(server_hybrid="rrf"), minilm)
    assert cluster.fusion_for("年假怎么申请").reason.endswith(
        "not applied: the cluster fuses (OPENSEARCH__SERVER_HYBRID)")

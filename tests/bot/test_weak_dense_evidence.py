"""The evidence check when the dense side is weak for the question's language (issue 20).

The retriever here is the protocol fake with a real ``fusion_for`` (search.fusion_weights over the
MiniLM model card), so the pipeline's decision is exercised without loading a model; the same
path with the real model and index is tests/bot/test_chinese_kb.py.
"""

from __future__ import annotations

from search.fusion_weights import embedder_languages, fusion_weights
from tests.bot.conftest import FakeRetriever, PipelineConfig, make_hit

from bot.answer.pipeline import AnswerPipeline

ZH_PASSAGE = "可以通过环境变量 LOREBOT_DATA_DIR 修改数据目录的位置。删除这个目录就会清空索引。"


class LanguageAwareRetriever(FakeRetriever):
    def fusion_for(self, query: str):
        model = "all-MiniLM-L6-v2"
        return fusion_weights(query, embedder=model, languages=embedder_languages(model))


async def ask(question: str, *hits, retriever_class=LanguageAwareRetriever):
    retriever = retriever_class(list(hits), default_mode="hybrid")
    return await AnswerPipeline(retriever, None, PipelineConfig()).answer(question)


async def test_a_chinese_question_with_a_keyword_match_is_answered_despite_a_low_cosine():
    # MiniLM's cosine for this Chinese pair is meaningless; 0.05 is under MIN_SIMILARITY (0.15).
    hit = make_hit(1, ZH_PASSAGE, similarity=0.05, title="快速入门")
    answer = await ask("如何修改数据目录的位置？", hit)
    assert answer.mode == "extractive" and answer.citations[0].title == "快速入门"
    assert "LOREBOT_DATA_DIR" in answer.text
    # The old rule, without the language signal, refused it.
    old = await ask("如何修改数据目录的位置？", hit, retriever_class=FakeRetriever)
    assert old.mode == "no_evidence"


async def test_an_off_topic_chinese_question_is_refused_despite_a_high_cosine():
    # MiniLM scores unrelated Chinese texts alike, often above the threshold.
    hit = make_hit(1, ZH_PASSAGE, similarity=0.6, title="快速入门")
    answer = await ask("公司年会在哪里举行？", hit)
    assert answer.mode == "no_evidence"
    old = await ask("公司年会在哪里举行？", hit, retriever_class=FakeRetriever)
    assert old.mode == "extractive"


async def test_keyword_hits_the_dense_side_never_ranked_count_for_a_chinese_question():
    bm25_only = make_hit(1, ZH_PASSAGE, similarity=None, title="快速入门")
    noise = make_hit(2, "Hotel costs are reimbursed up to 180 euros per night.", similarity=0.3)
    answer = await ask("数据目录的位置怎么修改", bm25_only, noise)
    assert answer.mode == "extractive" and answer.citations[0].title == "快速入门"


async def test_english_questions_keep_the_cosine_threshold():
    hit = make_hit(1, "Hotel costs are reimbursed up to 180 euros per night.", similarity=0.05)
    assert (await ask("hotel costs per night", hit)).mode == "no_evidence"

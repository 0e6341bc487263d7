"""Pseudo-questions from the knowledge base itself (search.finetune.pseudo): no LLM needed."""

from types import SimpleNamespace

import pytest

from search.finetune.pseudo import pseudo_questions, sentences


def _chunk(cid, doc, text, title="Travel policy", headings=()):
    return SimpleNamespace(chunk_id=cid, doc_id=doc, source="kb", title=title, path=f"{doc}.md",
                           url=None, headings=tuple(headings), text=text)


TEXT = ("Economy class is required for flights shorter than six hours. Too short. Hotel costs "
        "are reimbursed up to 180 euros per night when booked through the travel desk! Fine.")


def test_sentences_keep_question_sized_ones():
    assert sentences(TEXT) == [
        "Economy class is required for flights shorter than six hours.",
        "Hotel costs are reimbursed up to 180 euros per night when booked through the travel "
        "desk!"]


def test_a_sentence_asks_for_its_passage_seeded_and_deduplicated():
    chunks = [_chunk("c1", "travel", TEXT), _chunk("c2", "travel2", TEXT)]
    one = pseudo_questions(chunks, kind="sentence", seed=1)
    assert one == pseudo_questions(chunks, kind="sentence", seed=1)
    assert one[0]["question"] in sentences(TEXT) and one[0]["chunk_id"] == "c1"
    assert one[0]["doc_id"] == "travel" and one[0]["how"] == "sentence"
    # The second chunk's draw differs or is dropped as a duplicate: never the same question twice.
    assert len({r["question"] for r in one}) == len(one)
    both = pseudo_questions(chunks[:1], kind="sentence", per_chunk=5)
    assert {r["question"] for r in both} == set(sentences(TEXT))


def test_the_nearest_heading_else_the_title_asks_for_the_chunk():
    chunks = [_chunk("c1", "d", TEXT, headings=("Travel", "Hotel costs")),
              _chunk("c2", "d", TEXT), _chunk("c3", "e", TEXT, title="Travel policy")]
    got = pseudo_questions(chunks, kind="title")
    assert [(r["question"], r["chunk_id"]) for r in got] == [("Hotel costs", "c1"),
                                                             ("Travel policy", "c2")]
    assert len(pseudo_questions(chunks, kind="both")) == 4  # 2 titles, 2 new sentences


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="sentence, title, both"):
        pseudo_questions([], kind="keywords")

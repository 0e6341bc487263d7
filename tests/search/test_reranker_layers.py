"""A reranker trained from fewer of the base model's layers is smaller, and loads as trained."""

from __future__ import annotations

import pytest

from search.finetune.data import Example, Passage
from search.finetune.reranker import RerankerTraining, train_reranker
from search.rerank import CrossEncoderReranker

EXAMPLES = [
    Example("q1", "How long do refunds take?", {"refunds"},
            [Passage("refunds", "Refunds are paid back within five working days.")],
            [Passage("vpn", "Connect to the VPN before opening the wiki.")]),
    Example("q2", "Which port does the VPN use?", {"vpn"},
            [Passage("vpn", "The VPN listens on UDP port 1194.")],
            [Passage("refunds", "Refunds are paid back within five working days.")]),
]


def test_a_reranker_trained_from_two_layers_has_two_and_scores(tmp_path):
    out = tmp_path / "rr"
    stats = train_reranker(EXAMPLES, out, base_model="all-MiniLM-L6-v2",
                           config=RerankerTraining(max_steps=1, batch_size=4, layers=2))
    assert stats["steps"] == 1
    reranker = CrossEncoderReranker(str(out))
    assert reranker.model.encoder.config.num_hidden_layers == 2
    assert len(reranker.model.encoder.encoder.layer) == 2
    scores = reranker.scores("VPN port?", ["The VPN listens on UDP port 1194.", "Refunds."])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)


def test_more_layers_than_the_model_has_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="between 1 and 6"):
        train_reranker(EXAMPLES, tmp_path / "rr", base_model="all-MiniLM-L6-v2",
                       config=RerankerTraining(max_steps=1, layers=7))


def test_group_training_ranks_the_positive_first(tmp_path):
    """The listwise + pairwise loss learns to put each query's positive above its negatives
    (on the training groups: a check that the loop learns at all, not of generalisation)."""
    examples = [
        Example("q1", "How long do refunds take?", {"refunds"},
                [Passage("refunds", "Refunds are paid back within five working days.")],
                [Passage("vpn", "The VPN listens on UDP port 1194."),
                 Passage("lunch", "Lunch is served in the canteen from noon.")]),
        Example("q2", "Which port does the VPN use?", {"vpn"},
                [Passage("vpn", "The VPN listens on UDP port 1194.")],
                [Passage("refunds", "Refunds are paid back within five working days."),
                 Passage("lunch", "Lunch is served in the canteen from noon.")]),
    ]
    out = tmp_path / "rr"
    stats = train_reranker(examples, out, base_model="all-MiniLM-L6-v2",
                           config=RerankerTraining(epochs=20, batch_size=6, learning_rate=1e-4,
                                                   layers=2, warmup_ratio=0.0))
    assert stats["groups"] == 2 and stats["pairs"] == 6
    reranker = CrossEncoderReranker(str(out))
    for ex in examples:
        texts = [p.text for p in (*ex.positives, *ex.negatives)]
        scores = reranker.scores(ex.query, texts)
        assert scores[0] == max(scores), (ex.query, scores)

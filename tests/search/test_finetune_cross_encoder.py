"""The standard cross-encoder (search.finetune.cross_encoder) compared with lorebot's reranker:
built from the shipped MiniLM weights, cut to the same layers, trained by CrossEncoderTrainer,
served by search.rerank like any CrossEncoder directory."""

import pytest

from search.finetune.data import Example, Passage


@pytest.mark.slow
def test_a_standard_cross_encoder_trains_and_serves_with_the_layers_asked_for(tmp_path):
    from search.finetune.cross_encoder import train_cross_encoder
    from search.finetune.reranker import RerankerTraining
    from search.rerank import CrossEncoderReranker

    examples = [Example("q1", "Which port does the VPN use?", {"vpn"},
                        [Passage("vpn", "The VPN listens on UDP port 1194.")],
                        [Passage("lunch", "Lunch is served in the canteen from noon."),
                         Passage("hotel", "Hotels are reimbursed up to 180 euros a night.")])]
    out = tmp_path / "ce"
    stats = train_cross_encoder(examples, out, base_model="all-MiniLM-L6-v2",
                                config=RerankerTraining(max_steps=2, layers=2))
    assert stats["steps"] == 2 and stats["groups"] == 1
    reranker = CrossEncoderReranker(str(out))
    assert reranker.model.model.config.num_hidden_layers == 2
    assert reranker.blend == 1.0  # not lorebot's: it replaces the fused order
    scores = reranker.scores("Which port does the VPN use?", ["UDP port 1194.", "Lunch at noon."])
    assert len(scores) == 2 and all(0.0 <= x <= 1.0 for x in scores)

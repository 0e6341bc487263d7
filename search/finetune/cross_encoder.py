"""A standard cross-encoder, for comparison with lorebot's segment-cosine reranker (issue 17).

sentence-transformers' ``CrossEncoder`` built from the shipped MiniLM weights (a fresh one-logit
classification head on the pair's [CLS] token), cut to the same layers as lorebot's reranker so
both cost the same per pair, trained with ``CrossEncoderTrainer`` and the library's in-batch
``MultipleNegativesRankingLoss`` on the same (query, positive, hard negatives) groups. Saved as a
plain CrossEncoder directory, which ``LOREBOT_SEARCH__RERANKER_MODEL`` (search.rerank) serves.
bench/reranker_side_by_side.py measures both on the same split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from search.embedding import resolve_model_path
from search.finetune.data import Example
from search.finetune.loop import (
    quiet_transformers,
    require_training_extra,
    scratch_dir,
    train_with_progress,
    trainer_arguments,
)
from search.finetune.reranker import RerankerTraining, training_columns, training_groups


def train_cross_encoder(
    examples: Sequence[Example], out_dir: Path, *, base_model: str,
    config: RerankerTraining = RerankerTraining(),
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Train a standard CrossEncoder from ``base_model``'s weights into ``out_dir``;
    ``config.batch_size`` counts pairs per step, as for lorebot's reranker."""
    require_training_extra()
    from datasets import Dataset
    from sentence_transformers import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    from search.rerank_model import keep_layers

    groups = training_groups(examples, config.prior_negatives)
    if not groups:
        raise ValueError("no training groups: no example has both a positive and a negative")
    with quiet_transformers():
        model = CrossEncoder(resolve_model_path(base_model), num_labels=1,
                             max_length=config.max_length, device="cpu")
    if config.layers:
        keep_layers(model.model, config.layers)
    # One dataset per group size (every row of a batch needs the same columns); the loss takes
    # (query, positive, negative_1..n) and adds the batch's other passages as negatives.
    datasets = {name: Dataset.from_dict(cols) for name, cols in training_columns(groups).items()}
    per_step = max(1, config.batch_size // max(len(g[1]) for g in groups))
    loss = MultipleNegativesRankingLoss(model)
    with scratch_dir() as tmp:
        args = trainer_arguments(CrossEncoderTrainingArguments,
                                 replace(config, batch_size=per_step), tmp)
        trainer = CrossEncoderTrainer(
            model=model, args=args, loss=loss,
            train_dataset=datasets if len(datasets) > 1 else next(iter(datasets.values())))
        step, loss_value = train_with_progress(trainer, progress)
    model.save_pretrained(str(out_dir))
    return {"groups": len(groups), "pairs": sum(len(g[1]) for g in groups), "steps": step,
            "final_loss": loss_value}

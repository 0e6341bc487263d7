"""Fine-tune lorebot's cross-encoder reranker (:mod:`search.rerank_model`) from MiniLM's weights.

Trained by sentence-transformers' ``CrossEncoderTrainer`` (the ``train`` extra): the model is
expressed as a ``CrossEncoder`` whose last module scores a pair by its segments' cosine
(:func:`_as_cross_encoder`, sharing the weights), and saved in lorebot's own format. Each training
group is one query with one positive passage and its hard negatives; the loss is a softmax
cross-entropy over the group (the positive must outscore its negatives), a small loss module of
our own, because none of the library's cross-encoder losses is that one (see
``GroupSoftmaxLoss``). No per-pair binary cross-entropy: it pulls every score toward the share of
positives and cost this model ranking quality (SciFact validation 0.501 against 0.520 nDCG@10
with the group loss alone). Instead, once trained, the logit's scale and bias are refitted on the
cosines of the pairs seen in the second half of training, so its sigmoid is a chance of relevance
(the evidence threshold's 0..1 score); the order of any one question's passages does not change.

The trainer replaced a hand-written loop (issue 13) after a measurement on the same SciFact
sample (96 training queries, 106 groups of a positive and 4 mined hard negatives, the default
settings: 16 pairs a step, 256 tokens, 3 layers, 36 steps; 60 validation and 60 test queries,
their top 15 dense hits over 507 documents reordered by the reranker alone): nDCG@10 validation
/ test 0.691 / 0.731 after the loop, 0.719 / 0.783 after the trainer, at a median 12.8 against
14.6 s a step on two shared, loaded cores, where single steps of either ranged from 4 to 20 s.

The model starts from the bi-encoder's own notion of similarity (the cosine of the query's and
the passage's pooled tokens, read together), so training refines a ranker instead of teaching a
fresh head from nothing: a classification head on these weights, trained the same way, ranked
SciFact validation queries worse than the fused order it was reordering (0.407 against 0.690).

How far the trained model's scores outweigh the fused ones (its ``blend``) is fitted by the gate
on the validation queries: see ``bot.training.blend``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from search.embedding import resolve_model_path
from search.finetune.data import Example
from search.finetune.loop import (
    Training,
    quiet_transformers,
    require_training_extra,
    scratch_dir,
    train_with_progress,
    trainer_arguments,
)
# keep_layers lives with the model it cuts (search.rerank_model builds models with it); it
# is still imported from here by the test fixtures.
from search.rerank_model import keep_layers  # noqa: F401

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankerTraining(Training):
    batch_size: int = 16
    learning_rate: float = 1e-4
    max_length: int = 256
    layers: int | None = None  # keep this many of the base model's layers; None: all
    prior_negatives: int = 0  # see training_groups


def training_groups(examples: Sequence[Example],
                    prior_negatives: int = 0) -> list[tuple[str, list[str]]]:
    """(query, [positive, *hard negatives]) per positive passage; groups without a negative
    are dropped (they teach nothing to rank).

    ``prior_negatives``: besides its hard negatives, a group takes up to this many of the
    query's other hits (``Example.others``, best first) that are some other training question's
    positive. Without them every such document is only ever seen winning, and the model learns
    *which documents are answers* instead of *what answers this question*: on SciFact a reranker
    trained 2 epochs moved non-relevant training positives up 3.4 places on average among the
    guard questions' 15 candidates, while their relevant documents moved down (the guard lost
    0.033 nDCG@10)."""
    answers = {d for ex in examples for d in ex.positive_docs}
    groups = []
    for ex in examples:
        confusers = [p for p in ex.others
                     if p.doc_id in answers and p.doc_id not in ex.positive_docs]
        negatives = [p.text for p in (*ex.negatives, *confusers[:prior_negatives])]
        if negatives:
            groups += [(ex.query, [pos.text, *negatives]) for pos in ex.positives]
    return groups


def training_columns(groups: Sequence[tuple[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    """The trainer's datasets: one per group size (``query``, ``positive``, ``negative_1``...),
    because every row of a batch needs the same columns and the trainer draws each batch from
    one dataset."""
    out: dict[str, dict[str, list[str]]] = {}
    for query, (positive, *negatives) in groups:
        names = ["query", "positive", *(f"negative_{i + 1}" for i in range(len(negatives)))]
        cols = out.setdefault(f"negatives_{len(negatives)}", {name: [] for name in names})
        cols["query"].append(query)
        cols["positive"].append(positive)
        for i, negative in enumerate(negatives):
            cols[f"negative_{i + 1}"].append(negative)
    return dict(sorted(out.items()))


def train_reranker(
    examples: Sequence[Example],
    out_dir: Path,
    *,
    base_model: str,
    config: RerankerTraining = RerankerTraining(),
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Train from ``base_model`` (a bi-encoder, or a reranker this trainer saved) into ``out_dir``.

    ``config.batch_size`` counts pairs per step (whole groups are kept together).
    ``progress(step, total_steps, loss)`` is called after every optimiser step. Returns training
    statistics (groups, pairs, steps, final loss, whether the scores were calibrated, and the
    calibrated scale and bias).
    """
    require_training_extra()
    import torch
    from datasets import Dataset
    from sentence_transformers import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from search import rerank_model

    groups = training_groups(examples, config.prior_negatives)
    if not groups:
        raise ValueError("no training groups: no example has both a positive and a negative")
    with quiet_transformers():
        model = rerank_model.build(resolve_model_path(base_model), layers=config.layers,
                                   max_length=config.max_length)
        cross_encoder = _as_cross_encoder(model, resolve_model_path(base_model))
    datasets = {name: Dataset.from_dict(cols) for name, cols in training_columns(groups).items()}
    per_step = max(1, config.batch_size // max(len(g[1]) for g in groups))
    loss = _group_loss_class()(cross_encoder)
    with scratch_dir() as tmp:
        # The trainer's batch counts groups; config.batch_size counts pairs.
        args = trainer_arguments(CrossEncoderTrainingArguments,
                                 replace(config, batch_size=per_step), tmp)
        trainer = CrossEncoderTrainer(
            model=cross_encoder, args=args, loss=loss,
            train_dataset=datasets if len(datasets) > 1 else next(iter(datasets.values())),
        )
        loss.trainer = trainer  # its step count says when the second half of training starts
        step, loss_value = train_with_progress(trainer, progress)
    model.eval()
    seen = loss.seen
    calibrated = model.calibrate(torch.cat([c for c, _ in seen]).numpy() if seen else [],
                                 torch.cat([y for _, y in seen]).numpy() if seen else [])
    if not calibrated:
        log.warning("reranker scores not calibrated (the training pairs gave no usable fit): "
                    "the evidence threshold reads the training temperature's sigmoid")
    model.save(out_dir, base_model=str(base_model))
    return {"groups": len(groups), "pairs": sum(len(g[1]) for g in groups), "steps": step,
            "final_loss": loss_value, "calibrated": calibrated,
            "score_scale": round(float(model.scale.detach()), 4),
            "score_bias": round(float(model.bias.detach()), 4)}


def _as_cross_encoder(model, path):
    """lorebot's segment-cosine model as a sentence-transformers ``CrossEncoder``, sharing its
    encoder and head (so training one trains the other): a feature-extraction ``Transformer``
    module, then a module that pools the two segments and writes ``scale * cosine + bias`` as the
    pair's score. Used only to train with ``CrossEncoderTrainer``; the model is saved, loaded
    and served in lorebot's own format (:mod:`search.rerank_model`)."""
    import torch.nn.functional as F
    from sentence_transformers import CrossEncoder
    from sentence_transformers.base.modules import Module
    from sentence_transformers.base.modules.transformer import Transformer

    class SegmentCosineScore(Module):
        def __init__(self):
            super().__init__()
            self.scale, self.bias = model.scale, model.bias  # the same Parameters

        def forward(self, features, **kwargs):
            hidden = features["token_embeddings"]
            mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            second = features["token_type_ids"].unsqueeze(-1).to(hidden.dtype)
            query_mask, passage_mask = mask * (1 - second), mask * second
            q = (hidden * query_mask).sum(1) / query_mask.sum(1).clamp(min=1)
            p = (hidden * passage_mask).sum(1) / passage_mask.sum(1).clamp(min=1)
            features["cosine"] = F.cosine_similarity(q, p, dim=-1)
            features["scores"] = (self.scale * features["cosine"] + self.bias).unsqueeze(1)
            return features

        def save(self, output_path, *args, **kwargs):  # never saved in this format
            raise NotImplementedError

    transformer = Transformer(str(path), transformer_task="feature-extraction",
                              max_seq_length=model.max_length)
    transformer.model = model.encoder  # the one cut to config.layers; its own copy is dropped
    transformer.model.config.num_labels = 1  # CrossEncoder reads its output width here
    return CrossEncoder(modules=[transformer, SegmentCosineScore()], device="cpu")


def _group_loss_class():
    import torch
    import torch.nn.functional as F

    class GroupSoftmaxLoss(torch.nn.Module):
        """Softmax cross-entropy over each group (its positive first), as the hand-written loop
        did: sentence-transformers' cross-encoder ``MultipleNegativesRankingLoss`` always adds
        random in-batch negatives (``num_negatives=0`` fails: "cannot sample n_sample <= 0
        samples"), and ``ListNetLoss`` softmaxes the 0/1 labels into a soft target. Records each
        pair's cosine and label over the second half of the steps, for the calibration: by
        then the scores are close to the trained model's."""

        def __init__(self, model):
            super().__init__()
            self.model = model
            self.trainer = None
            self.seen: list[tuple] = []

        def forward(self, inputs, labels=None, prompt=None, task=None):
            queries, *columns = inputs
            pairs = [(q, column[i]) for column in columns for i, q in enumerate(queries)]
            features = self.model.preprocess(pairs, prompt=prompt, task=task)
            features = {k: v.to(self.model.device) if hasattr(v, "to") else v
                        for k, v in features.items()}
            out = self.model(features)
            logits = self.model[-1].scale * out["cosine"]
            table = logits.view(len(columns), len(queries)).T  # row: one group, positive first
            state = self.trainer.state if self.trainer is not None else None
            if state is not None and state.global_step >= state.max_steps // 2:
                labels01 = torch.zeros_like(table)
                labels01[:, 0] = 1.0
                self.seen.append((out["cosine"].detach().view(len(columns), -1).T.reshape(-1),
                                  labels01.reshape(-1)))
            return F.cross_entropy(table, torch.zeros(len(queries), dtype=torch.long))

    return GroupSoftmaxLoss

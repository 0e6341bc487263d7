"""Fine-tune lorebot's cross-encoder reranker (:mod:`search.rerank_model`) from MiniLM's weights.

A plain PyTorch loop, without the ``datasets``/``accelerate`` dependencies sentence-transformers'
trainer needs. Each training group is one query with one positive passage and its hard
negatives; the loss is a softmax cross-entropy over the group (the positive must outscore its
negatives). AdamW, linear warm-up and decay. No per-pair binary cross-entropy: it pulls every
score toward the share of positives and cost this model ranking quality (SciFact validation
0.501 against 0.520 nDCG@10 with the group loss alone). Instead, once trained, the logit's scale
and bias are refitted on the cosines of the pairs seen in the second half of training, so its
sigmoid is a chance of relevance (the evidence threshold's 0..1 score); the order of any one
question's passages does not change.

The model starts from the bi-encoder's own notion of similarity (the cosine of the query's and
the passage's pooled tokens, read together), so training refines a ranker instead of teaching a
fresh head from nothing: a classification head on these weights, trained the same way, ranked
SciFact validation queries worse than the fused order it was reordering (0.407 against 0.690).

How far the trained model's scores outweigh the fused ones (its ``blend``) is fitted by the gate
on the validation queries: see ``bot.training.blend``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from search.embedding import resolve_model_path
from search.finetune.data import Example
from search.finetune.loop import (
    Training,
    adamw_with_warmup,
    quiet_transformers,
    run_steps,
    total_steps,
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


def training_groups(examples: Sequence[Example]) -> list[tuple[str, list[str]]]:
    """(query, [positive, *hard negatives]) per positive passage; groups without a negative
    are dropped (they teach nothing to rank)."""
    groups = []
    for ex in examples:
        negatives = [p.text for p in ex.negatives]
        if negatives:
            groups += [(ex.query, [pos.text, *negatives]) for pos in ex.positives]
    return groups


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
    import torch

    from search import rerank_model

    groups = training_groups(examples)
    if not groups:
        raise ValueError("no training groups: no example has both a positive and a negative")
    random.Random(config.seed).shuffle(groups)
    torch.manual_seed(config.seed)
    with quiet_transformers():
        model = rerank_model.build(resolve_model_path(base_model), layers=config.layers,
                                   max_length=config.max_length)
    per_step = max(1, config.batch_size // max(len(g[1]) for g in groups))
    batches = [groups[i: i + per_step] for i in range(0, len(groups), per_step)]
    total = total_steps(len(batches), config.epochs, config.max_steps)
    params = list(model.parameters())
    optimizer, scheduler = adamw_with_warmup(params, config.learning_rate, total,
                                             config.warmup_ratio)
    model.train()
    rng = random.Random(config.seed)

    def epoch():
        rng.shuffle(batches)
        return batches

    seen: list[tuple] = []  # (cosines, labels) of the second half of the steps, to calibrate
    calls = 0

    def loss_of(batch):
        nonlocal calls
        calls += 1
        return _group_loss(model, batch, seen if calls > total // 2 else None)

    step, loss_value = run_steps(
        epoch, total, loss_of, optimizer, scheduler=scheduler, clip=params, progress=progress,
    )
    model.eval()
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


def _group_loss(model, batch: Sequence[tuple[str, list[str]]], record: list | None = None):
    """Softmax cross-entropy over each group (its positive first); ``record`` collects each
    pair's cosine and 0/1 label for the calibration."""
    import torch
    import torch.nn.functional as F

    queries = [q for q, passages in batch for _ in passages]
    passages = [p for _, ps in batch for p in ps]
    cosines = model.similarity(queries, passages).view(-1)
    logits = model.scale * cosines
    width = max(len(ps) for _, ps in batch)
    table = torch.full((len(batch), width), float("-inf"))
    labels = torch.zeros(len(passages))
    at = 0
    for row, (_, ps) in enumerate(batch):
        table[row, : len(ps)] = logits[at: at + len(ps)]
        labels[at] = 1.0
        at += len(ps)
    if record is not None:
        record.append((cosines.detach(), labels))
    return F.cross_entropy(table, torch.zeros(len(batch), dtype=torch.long))

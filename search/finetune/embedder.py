"""Fine-tune the embedding model: MultipleNegativesRankingLoss with in-batch and hard negatives.

Every (query, positive passage, hard negative) triplet is one row. In a batch each query must
rank its own positive above every other passage of the batch: the other rows' positives and
negatives (in-batch negatives) and its own hard negative, mined from the current index. That is
sentence-transformers' ``MultipleNegativesRankingLoss``, used here directly on tokenized
features in a plain PyTorch loop (AdamW, linear warm-up and decay), because the trainer needs
``datasets``/``accelerate``, which lorebot does not depend on. The result is a sentence-transformers
directory, so :class:`search.embedding.SentenceTransformerEmbedder` loads it unchanged.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from search.embedding import resolve_model_path
from search.finetune.data import Example
from search.finetune.loop import Training, adamw_with_warmup, run_steps, total_steps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedderTraining(Training):
    scale: float = 20.0  # MNRL's default: cosine x 20, a temperature of 0.05


Row = tuple[str, str, str | None]  # (query, positive, hard negative or None)


def training_rows(examples: Sequence[Example]) -> list[Row]:
    """One row per (query, positive); its hard negatives are dealt out round robin."""
    rows: list[Row] = []
    for ex in examples:
        negatives = [p.text for p in ex.negatives]
        for i, pos in enumerate(ex.positives):
            rows.append((ex.query, pos.text, negatives[i % len(negatives)] if negatives else None))
    return rows


def batches(rows: Sequence[Row], size: int, rng: random.Random) -> list[list[Row]]:
    """Shuffled batches in which no passage is twice a positive.

    Two rows with the same positive would each be told that the other's (identical) positive is
    a negative. Rows with and without a hard negative go in separate batches, so every column of
    a batch has one entry per row.
    """
    out: list[list[Row]] = []
    for group in ([r for r in rows if r[2] is not None], [r for r in rows if r[2] is None]):
        pending = list(group)
        rng.shuffle(pending)
        while pending:
            batch, seen, rest = [], set(), []
            for row in pending:
                if len(batch) < size and row[1] not in seen:
                    batch.append(row)
                    seen.add(row[1])
                else:
                    rest.append(row)
            out.append(batch)
            pending = rest
    rng.shuffle(out)
    return out


def train_embedder(
    examples: Sequence[Example],
    out_dir: Path,
    *,
    base_model: str,
    config: EmbedderTraining = EmbedderTraining(),
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Train from ``base_model`` (a sentence-transformers name or directory) into ``out_dir``.

    Runs on the calling thread (call it through ``search.models_runtime.run_model``).
    ``progress(step, total_steps, loss)`` is called after every optimiser step. Returns training
    statistics (rows, steps, final loss).
    """
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
    except ImportError:  # sentence-transformers < 5 keeps its losses at the top level
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    rows = training_rows(examples)
    if not rows:
        raise ValueError("no training rows: no example has a positive passage")
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    model = SentenceTransformer(resolve_model_path(base_model), device="cpu")
    model.max_seq_length = config.max_length
    loss_fn = MultipleNegativesRankingLoss(model, scale=config.scale)
    per_epoch = len(batches(rows, config.batch_size, random.Random(config.seed)))
    total = total_steps(per_epoch, config.epochs, config.max_steps)
    params = list(model.parameters())
    optimizer, scheduler = adamw_with_warmup(params, config.learning_rate, total,
                                             config.warmup_ratio)

    def batch_loss(batch: list[Row]):
        columns = [[q for q, _, _ in batch], [p for _, p, _ in batch]]
        if batch[0][2] is not None:
            columns.append([n for _, _, n in batch])
        return loss_fn([model.preprocess(column) for column in columns], None)

    model.train()
    step, loss_value = run_steps(
        lambda: batches(rows, config.batch_size, rng),  # a new order every epoch
        total, batch_loss, optimizer, scheduler=scheduler, clip=params, progress=progress,
    )
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir), create_model_card=False)
    return {"rows": len(rows), "steps": step, "final_loss": loss_value}

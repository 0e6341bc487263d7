"""Train a query adapter over frozen embeddings (seconds on a CPU).

Each example gives a query vector, its positive passage vectors and hard-negative passage vectors
(read from the index, never re-embedded). The loss is a softmax cross-entropy over the positive,
the example's hard negatives and every other example's passages in the batch (in-batch
negatives), as MultipleNegativesRankingLoss does; W starts at zero, so training starts from the
base model's ranking, and weight decay pulls it back towards it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from search.adapter import QueryAdapter
from search.finetune.loop import run_steps, total_steps


@dataclass(frozen=True)
class AdapterTraining:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    temperature: float = 0.05
    max_steps: int | None = None
    seed: int = 13


@dataclass(frozen=True)
class VectorExample:
    query: np.ndarray  # (d,)
    positive: np.ndarray  # (d,)
    negatives: np.ndarray  # (n, d), n may be 0


def train_adapter(
    examples: Sequence[VectorExample],
    *,
    config: AdapterTraining = AdapterTraining(),
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[QueryAdapter, dict]:
    import torch

    if not examples:
        raise ValueError("no training examples with a positive passage")
    torch.manual_seed(config.seed)
    dim = int(examples[0].query.shape[0])
    n_neg = max(len(e.negatives) for e in examples)
    q = torch.tensor(np.stack([e.query for e in examples]))
    p = torch.tensor(np.stack([e.positive for e in examples]))
    negs = np.zeros((len(examples), max(n_neg, 1), dim), np.float32)
    mask = np.zeros((len(examples), max(n_neg, 1)), bool)
    for i, e in enumerate(examples):
        if len(e.negatives):
            negs[i, : len(e.negatives)] = e.negatives
            mask[i, : len(e.negatives)] = True
    negs_t, mask_t = torch.tensor(negs), torch.tensor(mask)
    weight = torch.zeros(dim, dim, requires_grad=True)
    bias = torch.zeros(dim, requires_grad=True)
    opt = torch.optim.AdamW([weight, bias], lr=config.learning_rate,
                            weight_decay=config.weight_decay)
    order = list(range(len(examples)))
    rng = random.Random(config.seed)
    per_epoch = (len(order) + config.batch_size - 1) // config.batch_size
    total = total_steps(per_epoch, config.epochs, config.max_steps)

    def epoch():
        rng.shuffle(order)
        return [order[start: start + config.batch_size]
                for start in range(0, len(order), config.batch_size)]

    def batch_loss(batch: list[int]):
        idx = torch.tensor(batch)
        qb = q[idx]
        qa = torch.nn.functional.normalize(qb + qb @ weight + bias, dim=1)
        in_batch = qa @ p[idx].T  # (b, b): diagonal is the positive
        hard = torch.einsum("bd,bnd->bn", qa, negs_t[idx]).masked_fill(~mask_t[idx], -1e4)
        logits = torch.cat([in_batch, hard], dim=1) / config.temperature
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(idx)))

    step, loss_value = run_steps(epoch, total, batch_loss, opt, progress=progress)
    adapter = QueryAdapter(weight.detach().numpy().copy(), bias.detach().numpy().copy())
    return adapter, {"examples": len(examples), "steps": step, "final_loss": loss_value}


def vector_examples(examples, vectors: Callable[[list[str]], dict[str, np.ndarray]],
                    query_vectors: dict[str, np.ndarray]) -> list[VectorExample]:
    """Pair each example's query vector with its passages' stored vectors (by chunk id)."""
    ids = [p.chunk_id for ex in examples for p in (*ex.positives, *ex.negatives) if p.chunk_id]
    stored = vectors(ids)
    out = []
    for ex in examples:
        negs = [stored[p.chunk_id] for p in ex.negatives if p.chunk_id in stored]
        for pos in ex.positives:
            if pos.chunk_id in stored and ex.qid in query_vectors:
                out.append(VectorExample(
                    query_vectors[ex.qid], stored[pos.chunk_id],
                    np.stack(negs) if negs else np.zeros((0, len(stored[pos.chunk_id])), np.float32),
                ))
    return out

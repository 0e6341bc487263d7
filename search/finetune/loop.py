"""What the model trainers share: their common settings, the step budget, AdamW with a linear
warm-up and decay, quiet model loading, and the plain PyTorch step loop.

Each trainer keeps its own data handling and loss; torch and transformers are imported inside the
functions, so importing this module loads neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Training:
    """Settings of the embedder and reranker trainers; a trainer's subclass restates the defaults
    it changes (fields keep their order, so positional construction is unchanged)."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 128
    max_steps: int | None = None
    seed: int = 13


def total_steps(per_epoch: int, epochs: int, max_steps: int | None) -> int:
    total = per_epoch * epochs
    return total if max_steps is None else min(total, max_steps)


def adamw_with_warmup(params, learning_rate: float, total: int, warmup_ratio: float):
    """AdamW (weight decay 0.01) and a schedule that rises linearly over the first
    ``warmup_ratio`` of ``total`` steps, then falls linearly to zero at ``total``."""
    import torch

    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    warmup = max(1, int(total * warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    return optimizer, scheduler


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Only errors from transformers' logging inside the block: loading a base model under a fresh
    classification head prints a "newly initialised weights" report that is expected, not news."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def run_steps(
    epoch: Callable[[], Iterable[Any]],
    total: int,
    loss_of: Callable[[Any], Any],
    optimizer,
    *,
    scheduler=None,
    clip: list | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[int, float]:
    """``total`` optimiser steps, one per batch, over as many epochs as that takes.

    ``epoch()`` returns the next epoch's batches (called once per epoch, so it may reshuffle);
    ``loss_of(batch)`` the batch's loss tensor. ``clip``: parameters whose gradient norm is cut
    to 1.0 before each step. ``progress(step, total, loss)`` follows every step. Returns the
    steps taken and the last loss (NaN when no step was taken).
    """
    import torch

    step, loss_value = 0, float("nan")
    while step < total:
        for batch in epoch():
            if step >= total:
                break
            loss = loss_of(batch)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(clip, 1.0)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad()
            step += 1
            loss_value = loss.item()
            if progress is not None:
                progress(step, total, loss_value)
    return step, loss_value

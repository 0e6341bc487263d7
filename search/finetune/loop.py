"""What the model trainers share: their common settings, the step budget, quiet model loading,
the settings and progress reporting of sentence-transformers' trainers (the embedder's
``SentenceTransformerTrainer``, the reranker's ``CrossEncoderTrainer``), and a plain PyTorch step
loop for the one model still trained by hand: the query adapter, a matrix over stored vectors
with no transformer for those trainers to drive (seconds on a CPU).

Each trainer keeps its own data handling and loss; torch, transformers, datasets and accelerate are
imported inside the functions, so importing this module loads none of them.
"""

from __future__ import annotations

import tempfile
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


Progress = Callable[[int, int, float], None]


def require_training_extra() -> None:
    """Fail with the fix when the ``train`` extra is missing, not with a bare ImportError from
    deep inside sentence-transformers."""
    from importlib.util import find_spec

    missing = [name for name in ("datasets", "accelerate") if find_spec(name) is None]
    if missing:
        raise RuntimeError(f"training needs {' and '.join(missing)}: "
                           "pip install 'lorebot[train]' (or `make install`)")


def trainer_arguments(args_class, config: Training, output_dir: str, **extra):
    """``args_class`` (a sentence-transformers ``*TrainingArguments``) set as the plain loop was:
    AdamW with weight decay 0.01 (the trainer spares biases and LayerNorm weights, as usual; the
    loop decayed all), a linear warm-up over ``warmup_ratio`` of the steps then a linear decay to
    zero, gradients cut to norm 1.0, the seed for the order and initialisation.

    On the CPU even where a GPU is visible (the bot's serving models are on the CPU, and results
    must not depend on the host); no checkpoints (the caller saves the model where it belongs),
    no reporting integrations, no tqdm bars; a log entry every step, which is how the loss
    reaches ``progress``."""
    return args_class(
        output_dir=output_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=0.01,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **extra,
    )


@contextmanager
def scratch_dir() -> Iterator[str]:
    """The trainer's ``output_dir``: it must have one, and nothing it writes there is kept."""
    with tempfile.TemporaryDirectory(prefix="lorebot-train-") as tmp:
        yield tmp


def train_with_progress(trainer, progress: Progress | None) -> tuple[int, float]:
    """``trainer.train()`` with ``progress(step, total, loss)`` after every optimiser step.
    Returns the steps taken and the last step's loss (NaN when no step was taken).

    The loss is read from the per-step log (``on_log`` follows ``on_step_end`` within a step),
    and the log printer a trainer adds when tqdm is off is removed: it prints to stdout, where
    ``lorebot finetune --json`` writes its result."""
    from transformers import PrinterCallback, TrainerCallback

    last = {"step": 0, "loss": float("nan")}

    class _Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                last["step"], last["loss"] = state.global_step, float(logs["loss"])
                if progress is not None:
                    progress(state.global_step, state.max_steps, last["loss"])

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_Report())
    trainer.train()
    return trainer.state.global_step, last["loss"]

"""Fine-tune a cross-encoder reranker: MiniLM's encoder with a one-logit head, binary cross-entropy.

A plain PyTorch loop over the CrossEncoder's Hugging Face model (BCE-with-logits on
positive = 1 / hard negative = 0 pairs, AdamW, linear warm-up and decay): the same objective as
sentence-transformers' ``BinaryCrossEntropyLoss``, without the ``datasets``/``accelerate``
dependencies its trainer needs. The result is saved as a sentence-transformers CrossEncoder
directory, so :class:`search.rerank.CrossEncoderReranker` loads it unchanged.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from search.embedding import resolve_model_path
from search.finetune.data import Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankerTraining:
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    max_steps: int | None = None
    seed: int = 13
    layers: int | None = None  # keep this many of the base model's layers; None: all


def training_pairs(examples: Sequence[Example]) -> list[tuple[str, str, float]]:
    pairs = []
    for ex in examples:
        pairs += [(ex.query, p.text, 1.0) for p in ex.positives]
        pairs += [(ex.query, p.text, 0.0) for p in ex.negatives]
    return pairs


def train_reranker(
    examples: Sequence[Example],
    out_dir: Path,
    *,
    base_model: str,
    config: RerankerTraining = RerankerTraining(),
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Train from ``base_model`` (a bi-encoder or cross-encoder directory) into ``out_dir``.

    ``progress(step, total_steps, loss)`` is called after every optimiser step. Returns training
    statistics (pairs, steps, final loss).
    """
    import torch
    import transformers
    from sentence_transformers import CrossEncoder

    pairs = training_pairs(examples)
    if not pairs:
        raise ValueError("no training pairs: every example lacks positives and negatives")
    random.Random(config.seed).shuffle(pairs)
    torch.manual_seed(config.seed)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialised head" is expected here
    try:
        model = CrossEncoder(resolve_model_path(base_model), num_labels=1, device="cpu",
                             max_length=config.max_length)
    finally:
        transformers.logging.set_verbosity(verbosity)
    hf, tok = model.model, model.tokenizer
    if config.layers is not None:
        keep_layers(hf, config.layers)
    batches = [pairs[i: i + config.batch_size] for i in range(0, len(pairs), config.batch_size)]
    total = len(batches) * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(hf.parameters(), lr=config.learning_rate, weight_decay=0.01)
    warmup = max(1, int(total * config.warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    hf.train()
    step, loss_value = 0, float("nan")
    rng = random.Random(config.seed)
    while step < total:
        rng.shuffle(batches)
        for batch in batches:
            if step >= total:
                break
            enc = tok([q for q, _, _ in batch], [p for _, p, _ in batch], padding=True,
                      truncation="longest_first", max_length=config.max_length,
                      return_tensors="pt")
            labels = torch.tensor([y for _, _, y in batch], dtype=torch.float32)
            logits = hf(**enc).logits.view(-1)
            loss = loss_fn(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            loss_value = loss.item()
            if progress is not None:
                progress(step, total, loss_value)
    hf.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    return {"pairs": len(pairs), "steps": step, "final_loss": loss_value}


def keep_layers(hf_model, n: int) -> None:
    """Cut the encoder down to ``n`` of its transformer layers, evenly spaced, last one kept.

    Cost per pair is proportional to the layers, so 3 of MiniLM's 6 rerank twice as fast on a
    CPU. Spacing them out (as DistilBERT's initialisation does) keeps low- and high-level
    features both; the saved config records the new depth, so the model loads as it was trained.
    """
    import torch

    layers = hf_model.base_model.encoder.layer
    total = len(layers)
    if not 1 <= n <= total:
        raise ValueError(f"reranker layers must be between 1 and {total} for this model, not {n}")
    picked = sorted({round((i + 1) * total / n) - 1 for i in range(n)})
    hf_model.base_model.encoder.layer = torch.nn.ModuleList(layers[i] for i in picked)
    hf_model.config.num_hidden_layers = n

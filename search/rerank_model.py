"""lorebot's own cross-encoder: the query and the passage read together, scored by the cosine of
their two segments' mean-pooled tokens.

Why not the usual one-logit classification head: no pretrained cross-encoder is available
offline, and a fresh head on MiniLM's bi-encoder weights starts from noise (every pair scored
alike) and, with a few hundred training queries on two CPU cores, never got past the fused
ranking it was meant to improve (SciFact validation nDCG@10 0.407 against 0.690). Pooling each
segment and comparing them is what MiniLM was trained to do, so this model starts as a working
ranker (0.469 on the same queries, before any training) and fine-tuning adds what the query and
passage tokens learn from attending to each other.

The logit is ``scale * cosine + bias``; training learns the scale as the group softmax's
temperature, then both are refitted (logistic regression on the training pairs' cosines) so the
logit's sigmoid is the chance that a pair is relevant: the 0..1 score the evidence threshold
reads. ``blend`` is how far the reranker's scores outweigh the fused scores (1: the reranker
alone; 0: the fused order unchanged), fitted on the validation queries by the gate
(``bot.training.blend``), because a reranker trained on a few hundred queries is best used as
evidence added to the first stage's, not as its replacement.

A directory holds the encoder and tokenizer (Hugging Face format) and ``lorebot-reranker.json``
with the head and blend. torch and transformers are imported only when a model is built.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_FILE = "lorebot-reranker.json"
FORMAT = "segment-cosine/1"


def is_segment_reranker(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def load_config(path: str | Path) -> dict:
    cfg = json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path}: reranker format {cfg.get('format')!r} is not {FORMAT!r}; "
                         "retrain it with this version of `lorebot finetune reranker`")
    return cfg


def build(base: str | Path, *, layers: int | None = None, max_length: int = 256):
    """A model to train, on the CPU: from a bi-encoder's weights (a fresh head), or from a
    reranker saved in this format (its head too, so training continues where it stopped)."""
    head = {}
    if is_segment_reranker(base):
        cfg = load_config(base)
        head = {"scale": cfg["scale"], "bias": cfg["bias"]}
    return _module_class()(str(base), layers=layers, max_length=max_length, **head)


def load(path: str | Path, *, device: str = "cpu", max_length: int | None = None):
    """A saved model, in eval mode; ``max_length`` overrides the trained token cap."""
    cfg = load_config(path)
    model = _module_class()(str(path), max_length=max_length or cfg["max_length"],
                            scale=cfg["scale"], bias=cfg["bias"], blend=cfg.get("blend", 1.0))
    return model.to(device).eval()


def set_blend(path: str | Path, blend: float) -> None:
    """Record the blend fitted for a saved model (see :func:`search.rerank.blended_order`)."""
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be within 0..1, not {blend}")
    cfg = load_config(path)
    cfg["blend"] = float(blend)
    (Path(path) / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def fit_logistic(x, y, *, steps: int = 50, l2: float = 1e-3) -> tuple[float, float] | None:
    """(a, b) maximising the likelihood of ``y`` (0/1) under sigmoid(a * x + b); None when
    there is nothing to fit (one class only) or the slope comes out not positive."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.min() == y.max():
        return None
    X = np.stack([x, np.ones_like(x)], axis=1)
    w = np.zeros(2)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + l2 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return (float(w[0]), float(w[1])) if w[0] > 0 and np.isfinite(w).all() else None


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


_CLASS = None


def is_model(obj) -> bool:
    return _CLASS is not None and isinstance(obj, _CLASS)


def _module_class():
    """The torch module class, defined on first use so importing this file loads no torch."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    class SegmentCosineCrossEncoder(torch.nn.Module):
        def __init__(self, path: str, *, layers: int | None = None, max_length: int = 256,
                     scale: float = 20.0, bias: float = -10.0, blend: float = 1.0):
            super().__init__()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
            if layers is not None:
                keep_layers(self.encoder, layers)
            # scale 20 and bias -10: a cosine of 0.5 scores 0.5, and the softmax over a group
            # starts as sharp as MiniLM's own training temperature (0.05).
            self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
            self.bias = torch.nn.Parameter(torch.tensor(float(bias)))
            self.max_length = max_length
            self.blend = blend

        @property
        def device(self):
            return self.scale.device

        def forward(self, queries: list[str], passages: list[str]):
            """One logit per (query, passage) pair: ``scale * cosine + bias``."""
            return self.scale * self.similarity(queries, passages) + self.bias

        def similarity(self, queries: list[str], passages: list[str]):
            """The cosine of each pair's pooled query and passage tokens; a pair over
            ``max_length`` loses tokens from the longer of the two (the passage, for any
            sensible query)."""
            enc = self.tokenizer(queries, passages, padding=True, truncation="longest_first",
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            second = enc["token_type_ids"].unsqueeze(-1).to(hidden.dtype)
            query_mask, passage_mask = mask * (1 - second), mask * second
            q = (hidden * query_mask).sum(1) / query_mask.sum(1).clamp(min=1)
            p = (hidden * passage_mask).sum(1) / passage_mask.sum(1).clamp(min=1)
            return F.cosine_similarity(q, p, dim=-1)

        def calibrate(self, cosines, labels) -> bool:
            """Set scale and bias so the logit's sigmoid is the chance that a pair is relevant
            (logistic regression on ``cosines`` with 0/1 ``labels``; Newton steps, two
            parameters). The order of any one question's passages is unchanged. False, and
            nothing changed, when the fit does not rank relevant pairs higher."""
            fitted = fit_logistic(cosines, labels)
            if fitted is None:
                return False
            with torch.no_grad():
                self.scale.fill_(fitted[0])
                self.bias.fill_(fitted[1])
            return True

        def save(self, out: str | Path, **extra) -> None:
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            self.encoder.save_pretrained(str(out))
            self.tokenizer.save_pretrained(str(out))
            cfg = {"format": FORMAT, "max_length": self.max_length,
                   "scale": float(self.scale.detach()), "bias": float(self.bias.detach()),
                   "blend": float(self.blend), **extra}
            (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")

    _CLASS = SegmentCosineCrossEncoder
    return _CLASS

"""lorebot's segment-cosine cross-encoder (search.rerank_model) on ONNX Runtime.

The encoder is exported as it is (search.onnx_backend); what the torch module does after it,
pooling each segment's tokens and scoring their cosine, is repeated here in numpy, so the scores
match the torch model's (to about 1e-5 in fp32).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search import rerank_model
from search.onnx_backend import OnnxEncoder, cached_export


class OnnxSegmentReranker:
    """Scores (query, passage) pairs like ``SegmentCosineCrossEncoder.forward``, without torch."""

    def __init__(self, model_id: str, path: str | Path, cache_root: Path, *, int8: bool,
                 max_length: int | None = None):
        cfg = rerank_model.load_config(path)
        self.max_length = max_length or cfg["max_length"]
        self.scale, self.bias = float(cfg["scale"]), float(cfg["bias"])
        self.blend = float(cfg.get("blend", 1.0))
        self.onnx_file = cached_export(model_id, path, cache_root, int8=int8)
        self.encoder = OnnxEncoder(self.onnx_file, path)

    def similarity(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """The cosine of each pair's mean-pooled query tokens and passage tokens."""
        enc = self.encoder.tokenize(list(queries), list(passages), max_length=self.max_length)
        hidden = self.encoder.hidden(enc)
        mask = enc["attention_mask"][..., None].astype(hidden.dtype)
        second = enc["token_type_ids"][..., None].astype(hidden.dtype)
        q_mask, p_mask = mask * (1 - second), mask * second
        q = (hidden * q_mask).sum(1) / np.clip(q_mask.sum(1), 1, None)
        p = (hidden * p_mask).sum(1) / np.clip(p_mask.sum(1), 1, None)
        eps = 1e-8  # as torch.nn.functional.cosine_similarity
        norms = (np.clip(np.linalg.norm(q, axis=1), eps, None)
                 * np.clip(np.linalg.norm(p, axis=1), eps, None))
        return (q * p).sum(1) / norms

    def scores(self, query: str, passages: Sequence[str], batch_size: int) -> list[float]:
        """sigmoid(scale * cosine + bias) per passage, in the passages' order; shortest pairs
        batched together (as search.rerank does for the torch model), so little is padded."""
        order = sorted(range(len(passages)), key=lambda i: len(passages[i]))
        out = [0.0] * len(passages)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            logits = self.scale * self.similarity([query] * len(idx),
                                                  [passages[i] for i in idx]) + self.bias
            for i, s in zip(idx, 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))):
                out[i] = float(s)
        return out

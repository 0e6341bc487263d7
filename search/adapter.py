"""A query adapter: a small learned map applied to query embeddings at query time.

The embedding model stays frozen and the corpus vectors stay as indexed; only the query vector is
moved (``q' = normalise(q + q @ W + b)``, W and b trained by ``lorebot finetune adapter``), so
promoting an adapter needs no re-embedding. Numpy only: loading an adapter never imports torch.

An adapter also carries the dense weight it was fitted with (``dense_factor``, a multiplier on the
configured RRF dense weight): moving the query vectors makes the dense list better, so the fusion
that suited the base model under-trusts it. ``lorebot finetune adapter`` fits the factor on its
training queries out of fold (search.finetune.fusion_fit); the retriever applies it while the
adapter is in use, and a rollback drops it with the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search.errors import ModelError

ADAPTER_FILE = "adapter.npz"


class QueryAdapter:
    def __init__(self, weight: np.ndarray, bias: np.ndarray, dense_factor: float = 1.0) -> None:
        if weight.ndim != 2 or weight.shape[0] != weight.shape[1] or bias.shape != (weight.shape[0],):
            raise ModelError(f"bad adapter shapes {weight.shape} and {bias.shape}")
        if not (np.isfinite(dense_factor) and dense_factor > 0):
            raise ModelError(f"bad adapter dense factor {dense_factor!r}: must be above 0")
        self.weight = weight.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self.dense_factor = float(dense_factor)

    @property
    def dim(self) -> int:
        return int(self.weight.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Adapt L2-normalised query vectors (rows); the result is L2-normalised again."""
        v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if v.shape[1] != self.dim:
            raise ModelError(f"adapter expects {self.dim}-d vectors, got {v.shape[1]}-d; it was "
                             "trained for another embedding model")
        out = v + v @ self.weight + self.bias
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.reshape(np.shape(vectors)) if np.ndim(vectors) == 1 else out

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / ADAPTER_FILE
        np.savez(path, weight=self.weight, bias=self.bias,
                 dense_factor=np.float32(self.dense_factor))
        return path

    @classmethod
    def load(cls, directory: Path) -> QueryAdapter:
        path = Path(directory) / ADAPTER_FILE
        try:
            with np.load(path) as data:
                # Adapters saved before the factor existed fused at the configured weights.
                factor = float(data["dense_factor"]) if "dense_factor" in data.files else 1.0
                return cls(data["weight"], data["bias"], factor)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot load query adapter {str(path)!r}: {exc}") from exc

    @classmethod
    def identity(cls, dim: int) -> QueryAdapter:
        return cls(np.zeros((dim, dim), np.float32), np.zeros(dim, np.float32))


class AdaptedEmbedder:
    """Wraps an embedder: documents embed unchanged, queries go through the adapter."""

    def __init__(self, inner, adapter: QueryAdapter) -> None:
        self.inner = inner
        self.adapter = adapter

    def __getattr__(self, name):  # model_id, dim, tokenizer, max_tokens, warm_up, encode, ...
        return getattr(self.inner, name)

    @property
    def dense_factor(self) -> float:
        """The multiplier on the RRF dense weight: the wrapped embedder's (a fine-tuned one may
        bring its own) times the one fitted with the adapter, which was fitted on top of it."""
        return getattr(self.inner, "dense_factor", 1.0) * self.adapter.dense_factor

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return self.adapter.apply(await self.inner.embed_query(text))

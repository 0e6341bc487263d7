"""Cross-encoder reranking of the fused candidates."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from search.embedding import resolve_model_path
from search.errors import ModelError
from search.lazy import Once
# hit_text is also imported from here by bot/ and the benchmarks.
from search.models import Hit, hit_text
from search.models_runtime import run_model

log = logging.getLogger(__name__)


class Reranker(Protocol):
    """Rescores hits for a query; returns copies ordered by the new score (0..1, higher better)."""

    async def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` from a name or local path.

    Cost grows with the tokens the model reads: one forward pass per ``batch_size`` pairs, every
    pair of a batch padded to the batch's longest. Pairs are sorted by length before batching, so
    small batches waste little padding, and on a CPU a bigger batch buys almost no speed: hence
    the small default. (Retrieved chunks vary in length; on lorebot's docs one batch of 32 read
    2.3x the real tokens, and reranking took twice as long as with batches of 4; see
    bench/answer_bench.py.) Raise ``batch_size`` on a GPU. ``max_length`` caps the tokens of one
    pair (query, title and headings, passage; the rest of the passage is cut off); None keeps
    the model's own limit.
    """

    def __init__(
        self, name_or_path: str, *, device: str = "cpu", batch_size: int = 4,
        max_length: int | None = None, backend: str = "torch", cache_dir: Path | None = None,
    ):
        """``backend``: torch, onnx or onnx-int8 for lorebot's own model (search.rerank_onnx;
        any other cross-encoder, or no onnxruntime, runs on torch); ``cache_dir``: where ONNX
        exports are kept."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if max_length is not None and max_length < 16:
            raise ValueError(f"max_length must be at least 16 tokens, not {max_length}")
        self.model_id = name_or_path
        self.path = resolve_model_path(name_or_path)
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.backend = _backend(backend, self.path, device, cache_dir)
        self.cache_dir = cache_dir
        self._model = Once(self._load)

    @property
    def model(self):
        return self._model.get()

    def _load(self):
        if self.backend == "torch":
            return _load_cross_encoder(self.path, self.device, self.max_length)
        from search.rerank_onnx import OnnxSegmentReranker

        log.info("loading reranker %s on ONNX Runtime (%s)", self.path, self.backend)
        try:
            return OnnxSegmentReranker(self.model_id, self.path, self.cache_dir,
                                       int8=self.backend == "onnx-int8", max_length=self.max_length)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load reranker {self.path!r} on {self.backend}: {exc}. Set "
                             "LOREBOT_SEARCH__INFERENCE=torch, or retrain the reranker.") from exc

    def warm_up(self) -> None:
        self.scores("warm up", ["warm up"])

    @property
    def blend(self) -> float:
        """How far the reranker's order replaces the fused one (see :func:`blended_order`):
        a lorebot-trained model brings the weight fitted when it was trained; any other
        cross-encoder replaces the fused order."""
        return float(getattr(self.model, "blend", 1.0))

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to the query in 0..1 (sigmoid of the model's logit)."""
        if not passages:
            return []
        model = self.model
        if self.backend != "torch":
            return model.scores(query, passages, self.batch_size)
        import torch

        if is_segment_model(model):
            return _segment_scores(model, query, passages, self.batch_size)
        out = model.predict(
            [(query, p) for p in passages],
            batch_size=self.batch_size,
            activation_fn=torch.nn.Sigmoid(),
            show_progress_bar=False,
        )
        return [float(s) for s in out]

    async def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        texts = [hit_text(h) for h in hits]
        return rescored(hits, await run_model(self.scores, query, texts), self.blend)


def rescored(hits: Sequence[Hit], scores: Sequence[float], blend: float) -> list[Hit]:
    """Copies of ``hits`` (in the fused order, with their fused scores) carrying their reranker
    scores, in the blended order (see :func:`blended_order`)."""
    order = blended_order([_logit(s) for s in scores], [h.score for h in hits], blend)
    copies = [dataclasses.replace(h, score=s) for h, s in zip(hits, scores)]
    return [copies[i] for i in order]


def _logit(p: float) -> float:
    """The reranker's logit back from its 0..1 score: blending on the logit, an affine map of
    lorebot's model's cosine, keeps the blend independent of how the scores are calibrated."""
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def blended_order(scores: Sequence[float], fused: Sequence[float], blend: float) -> list[int]:
    """Positions of the hits, best first, by ``blend`` of their reranker ``scores`` and their
    ``fused`` scores (both given in the fused order).

    Both are scaled to 0..1 within the list and mixed ``blend : 1 - blend``: blend 1 is the
    reranker's order, 0 the fused order. The fused score, not just the place, goes in: a hit both
    BM25 and k-NN ranked high stands further ahead than one place (on SciFact validation this
    beat blending with the fused place, 0.705 against 0.691 nDCG@10). Ties keep the fused order.
    """
    n = len(scores)
    if n < 2 or blend >= 1.0:
        return sorted(range(n), key=lambda i: (-scores[i], i))

    def unit(values: Sequence[float]) -> list[float]:
        lo, hi = min(values), max(values)
        return [(v - lo) / ((hi - lo) or 1.0) for v in values]

    mixed = [blend * s + (1 - blend) * f for s, f in zip(unit(scores), unit(fused))]
    return sorted(range(n), key=lambda i: (-mixed[i], i))


def is_segment_model(model) -> bool:
    """Whether ``model`` is lorebot's own (search.rerank_model), not a sentence-transformers
    CrossEncoder."""
    from search import rerank_model

    return rerank_model.is_model(model)


def _segment_scores(model, query: str, passages: Sequence[str], batch_size: int) -> list[float]:
    """lorebot's own model (search.rerank_model): shortest pairs batched together, as
    sentence-transformers does for its CrossEncoder, so little padding is computed."""
    import torch

    order = sorted(range(len(passages)), key=lambda i: len(passages[i]))
    out = [0.0] * len(passages)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            logits = model([query] * len(chunk), [passages[i] for i in chunk])
            for i, p in zip(chunk, torch.sigmoid(logits).tolist()):
                out[i] = float(p)
    return out


def _backend(requested: str, path: str, device: str, cache_dir: Path | None) -> str:
    """The backend the reranker runs on: ONNX only for lorebot's own model (search.rerank_onnx)."""
    from search import rerank_model
    from search.onnx_backend import effective_backend

    backend = effective_backend(requested, device=device, what="reranker", cache_dir=cache_dir)
    if backend != "torch" and not rerank_model.is_segment_reranker(path):
        log.warning("reranker %s runs on torch, not %s: only lorebot's own reranker (`lorebot "
                    "finetune reranker`) has an ONNX path", path, backend)
        return "torch"
    return backend


def _load_cross_encoder(path: str, device: str, max_length: int | None = None):
    from search import rerank_model

    try:
        log.info("loading reranker %s", path)
        if rerank_model.is_segment_reranker(path):
            return rerank_model.load(path, device=device, max_length=max_length)
        from sentence_transformers import CrossEncoder

        return CrossEncoder(path, device=device, max_length=max_length)
    except Exception as exc:
        raise ModelError(
            f"cannot load reranker {path!r}: {exc}. Set LOREBOT_SEARCH__RERANKER_MODEL to a local "
            "CrossEncoder directory (e.g. one trained by `lorebot finetune reranker`), or unset it."
        ) from exc

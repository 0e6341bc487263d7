"""A sentence-transformers bi-encoder run on ONNX Runtime (see search.onnx_backend).

Reads the model directory's own sentence-transformers configuration (modules.json, the pooling
config, sentence_bert_config.json), so a fine-tuned model saved by sentence-transformers runs as
it was trained. Only the pipeline lorebot's embedders have is supported: Transformer, mean or CLS
pooling, optional Normalize; any other module (a Dense layer, say) raises ``Unsupported`` and
the caller stays on torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search.onnx_backend import OnnxEncoder, cached_export, masked_mean

class Unsupported(Exception):
    """The model's sentence-transformers pipeline has a module this runner does not implement."""


def read_pipeline(path: str | Path) -> tuple[str, int, bool]:
    """(pooling mode ``mean`` or ``cls``, max_seq_length, normalize) from a model directory."""
    path = Path(path)
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        raise Unsupported(f"{path} has no modules.json (not a sentence-transformers directory)")
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    # By class name: sentence-transformers saves the same modules under other import paths
    # across versions (``sentence_transformers.models.Pooling``, and since 5.x from its trainer
    # ``sentence_transformers.sentence_transformer.modules.pooling.Pooling``).
    kinds = [m.get("type") or "" for m in modules]
    names = [k.rsplit(".", 1)[-1] if k.startswith("sentence_transformers.") else k for k in kinds]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise Unsupported(f"{path}: modules {kinds} (only Transformer, Pooling[, Normalize])")
    pooling = json.loads((path / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    # Older files flag the mode (``pooling_mode_mean_tokens: true``); sentence-transformers 5
    # names it (``pooling_mode: "mean"``).
    on = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True]
    if isinstance(pooling.get("pooling_mode"), str):
        on = [f"pooling_mode_{pooling['pooling_mode']}"]
    modes = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
             "pooling_mode_mean": "mean", "pooling_mode_cls": "cls"}
    if len(on) != 1 or on[0] not in modes:
        raise Unsupported(f"{path}: pooling {on} (only mean or CLS)")
    bert_cfg = path / modules[0].get("path", "") / "sentence_bert_config.json"
    cfg = json.loads(bert_cfg.read_text(encoding="utf-8")) if bert_cfg.is_file() else {}
    if cfg.get("do_lower_case"):
        raise Unsupported(f"{path}: do_lower_case is not supported")
    return modes[on[0]], int(cfg.get("max_seq_length") or 512), len(kinds) == 3


class OnnxSentenceModel:
    """The parts of ``SentenceTransformer`` lorebot's embedder uses, on ONNX Runtime."""

    def __init__(self, model_id: str, path: str | Path, cache_root: Path, *, int8: bool):
        self.pooling, self.max_seq_length, self.normalize = read_pipeline(path)
        self.onnx_file = cached_export(model_id, path, cache_root, int8=int8)
        self.encoder = OnnxEncoder(self.onnx_file, path)
        self._dim: int | None = None

    def get_embedding_dimension(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode(["dimension"]).shape[1])
        return self._dim

    def encode(self, texts: Sequence[str], batch_size: int = 32, normalize_embeddings: bool = False,
               **_ignored) -> np.ndarray:
        """Embeddings of ``texts`` in their order; batched longest first, as
        sentence-transformers does, so a batch pads little."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = self.encoder.tokenize([texts[i] for i in idx], max_length=self.max_seq_length)
            hidden = self.encoder.hidden(enc)
            if self.pooling == "cls":
                vectors = hidden[:, 0]
            else:
                vectors = masked_mean(hidden, enc["attention_mask"])
            if self.normalize or normalize_embeddings:
                vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True),
                                            1e-12, None)
            for i, v in zip(idx, vectors):
                out[i] = v
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

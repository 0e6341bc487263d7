"""Builds every service from settings into one :class:`Services` (the factories for each part
are in ``bot.runtime.factories``; live model reload in ``bot.runtime.reload``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bot.runtime.factories import (
    active_models,
    model_registry,
    new_embedder,
    new_indexer,
    new_reranker,
    new_retriever,
    open_index,
)
from bot.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The running application's parts, built once and closed together."""

    settings: Settings
    index: object
    embedder: object
    reranker: object | None
    retriever: object
    indexer: object
    llm: object | None = None
    _pipeline: object | None = None
    # Swaps in models promoted or rolled back by another process (bot.runtime.reload); None when
    # the settings use no registry models.
    reloader: object | None = None

    @property
    def pipeline(self):
        """The answer pipeline (built on first use: `lorebot index` never needs it)."""
        if self._pipeline is None:
            from bot.answer.pipeline import AnswerPipeline

            self._pipeline = AnswerPipeline(
                self.retriever, self.llm, self.settings, count_tokens=self.count_tokens
            )
        return self._pipeline

    async def warm_up(self) -> None:
        """Load the models now, at start-up, so the first question does not pay for it."""
        from search.models_runtime import run_model

        await run_model(self.embedder.warm_up)
        if self.reranker is not None:
            await run_model(self.reranker.warm_up)

    def count_tokens(self, text: str) -> int:
        """Tokens as the embedding model counts them: a close, offline stand-in for the LLM's."""
        return len(self.embedder.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def close(self) -> None:
        if self.reloader is not None:
            await self.reloader.aclose()
        await self.index.close()
        if self.llm is not None:
            await self.llm.aclose()  # its HTTP connection pool

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def build_services(
    settings: Settings, *, index_path: Path | None = None, with_llm: bool = True
) -> Services:
    """Wire the index, models, retriever, indexer and (optionally) the LLM from settings.

    With registry models (FINETUNE__USE_REGISTRY), the retriever and indexer are wrapped so a
    promotion or rollback by another process takes effect here too (bot.runtime.reload).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = model_registry(settings) if settings.finetune.use_registry else None
    reloader = None
    if registry is not None:
        from bot.runtime.reload import ModelReloader

        # Before the registry is read: a promotion in between is then seen as a change.
        reloader = ModelReloader(settings, registry)
    models = active_models(settings, registry)
    index = open_index(settings, index_path, embedder_model=models.embedder)
    embedder = new_embedder(settings, models.embedder)
    if models.adapter is not None:
        from search.adapter import AdaptedEmbedder, QueryAdapter

        embedder = AdaptedEmbedder(embedder, QueryAdapter.load(models.adapter))
    reranker = new_reranker(settings, models.reranker) if models.reranker else None
    retriever = new_retriever(settings, index, embedder, reranker)
    indexer = new_indexer(settings, index, embedder)
    llm = None
    if with_llm:
        from bot.answer.llm import build_llm

        llm = build_llm(settings.llm, environ=os.environ)
    services = Services(settings, index, embedder, reranker, retriever, indexer, llm)
    if reloader is not None:
        reloader.attach(services, models)
    return services

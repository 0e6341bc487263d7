"""Builds every service from settings; the one place that knows which implementation is used."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bot.settings import Settings


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

    @property
    def pipeline(self):
        """The answer pipeline (built on first use: `lorebot index` never needs it)."""
        if self._pipeline is None:
            from bot.answer import AnswerPipeline

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
        await self.index.close()
        if self.llm is not None:
            await self.llm.aclose()  # its HTTP connection pool

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def open_index(settings: Settings, path: Path | None = None):
    """The index backend the settings choose; an explicit ``path`` always means a SQLite file."""
    if settings.search.backend == "opensearch" and path is None:
        return open_opensearch_index(settings)
    from search.index.sqlite import SqliteIndex

    s = settings.search
    return SqliteIndex(
        path or settings.index_path,
        title_weight=s.title_weight,
        headings_weight=s.headings_weight,
        text_weight=s.text_weight,
    )


def open_opensearch_index(settings: Settings):
    """The OpenSearch backend from ``settings.opensearch`` (the client connects lazily)."""
    from search.index.opensearch import OpenSearchIndex
    from search.index.opensearch_mapping import IndexLayout

    o, s = settings.opensearch, settings.search
    try:
        layout = IndexLayout(
            prefix=o.index_prefix, shards=o.shards, replicas=o.replicas, hnsw_m=o.hnsw_m,
            hnsw_ef_construction=o.hnsw_ef_construction, hnsw_ef_search=o.hnsw_ef_search,
        )
    except ValueError as exc:  # a bad prefix: say which setting
        from search.errors import IndexStoreError

        raise IndexStoreError(f"LOREBOT_OPENSEARCH__INDEX_PREFIX: {exc}") from exc
    return OpenSearchIndex(
        o.url,
        layout=layout,
        username=o.username,
        password=o.password.get_secret_value() if o.password else None,
        verify_certs=o.verify_certs,
        ca_certs=str(o.ca_certs) if o.ca_certs else None,
        timeout_s=o.timeout_s,
        title_weight=s.title_weight,
        headings_weight=s.headings_weight,
        text_weight=s.text_weight,
        bulk_chunk_size=o.bulk_chunk_size,
        bulk_max_retries=o.bulk_max_retries,
        server_hybrid=None if o.server_hybrid == "off" else o.server_hybrid,
        rrf_k=s.rrf_k,
        fusion_weights=(s.bm25_weight, s.dense_weight),
    )


def model_registry(settings: Settings):
    """The fine-tuned model registry under the data dir (see search.finetune.registry)."""
    from search.finetune.registry import ModelRegistry

    return ModelRegistry(settings.data_dir / "models")


def build_services(
    settings: Settings, *, index_path: Path | None = None, with_llm: bool = True
) -> Services:
    """Wire the index, models, retriever, indexer and (optionally) the LLM from settings."""
    from search.embedding import SentenceTransformerEmbedder
    from search.indexer import Indexer
    from search.retriever import Retriever

    s = settings.search
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    index = open_index(settings, index_path)
    embedder = SentenceTransformerEmbedder(
        s.embedding_model, device=s.device, batch_size=s.embed_batch_size
    )
    reranker_model = s.reranker_model
    registry = model_registry(settings) if settings.finetune.use_registry else None
    if registry is not None and registry.file.exists():
        adapter_dir = registry.active_path("adapter")
        if adapter_dir is not None:
            from search.adapter import AdaptedEmbedder, QueryAdapter

            embedder = AdaptedEmbedder(embedder, QueryAdapter.load(adapter_dir))
        if not reranker_model and (reranker_dir := registry.active_path("reranker")):
            reranker_model = str(reranker_dir)
    reranker = None
    if reranker_model:
        from search.rerank import CrossEncoderReranker

        reranker = CrossEncoderReranker(
            reranker_model, device=s.device, batch_size=s.rerank_batch_size,
            max_length=s.rerank_max_tokens,
        )
    retriever = Retriever(
        index,
        embedder,
        reranker,
        candidates=s.candidates,
        rrf_k=s.rrf_k,
        bm25_weight=s.bm25_weight,
        dense_weight=s.dense_weight,
        rerank_depth=s.rerank_depth,
        default_mode=s.default_mode,
    )
    indexer = Indexer(
        index, embedder, chunk_tokens=s.chunk_tokens, chunk_overlap=s.chunk_overlap
    )
    llm = None
    if with_llm:
        from bot.llm import build_llm

        llm = build_llm(settings.llm, environ=os.environ)
    return Services(settings, index, embedder, reranker, retriever, indexer, llm)

